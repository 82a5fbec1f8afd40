package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// FlagList is the body of GET /api/v1/flags.
type FlagList struct {
	Revision int64       `json:"revision"`
	Flags    []flag.Flag `json:"flags"`
}

func (s *Server) listFlags(c *gin.Context) {
	snap, err := s.store.Snapshot(c.Request.Context())
	if err != nil {
		s.FailStore(c, err)
		return
	}
	c.JSON(http.StatusOK, FlagList{Revision: snap.Revision, Flags: snap.Flags})
}

func (s *Server) getFlag(c *gin.Context) {
	f, err := s.store.Flag(c.Request.Context(), c.Param("key"))
	if errors.Is(err, store.ErrNotFound) {
		Fail(c, http.StatusNotFound, fmt.Sprintf("flag %q does not exist", c.Param("key")), "key")
		return
	}
	if err != nil {
		s.FailStore(c, err)
		return
	}
	c.Header("ETag", etag(f.Version))
	c.JSON(http.StatusOK, f)
}

// expectedVersion reads the version a change is conditional on: If-Match
// ("41", 41 or W/"41") wins over the version in the body. 0 means none.
func expectedVersion(c *gin.Context, body int64) (int64, bool) {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" {
		return body, true
	}
	h = strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	v, err := strconv.ParseInt(h, 10, 64)
	if err != nil || v <= 0 {
		Fail(c, http.StatusBadRequest, fmt.Sprintf("If-Match %q is not a flag version such as \"41\"", c.GetHeader("If-Match")), "If-Match")
		return 0, false
	}
	return v, true
}

func checkVersion(key string, expected int64, current flag.Flag, exists bool) error {
	if expected == 0 {
		return nil
	}
	if !exists {
		return fmt.Errorf("flag %q does not exist, but version %d was expected: %w", key, expected, store.ErrConflict)
	}
	if current.Version != expected {
		return fmt.Errorf("flag %q is at version %d, not %d: someone changed it; fetch it again and retry: %w", key, current.Version, expected, store.ErrConflict)
	}
	return nil
}

// mergeControllerFields puts into f what only the flag's rollout decides,
// whatever the edit says: whether the flag is tracked and, from the first
// start on (progressing, paused, promoted, rolled back or aborted), its
// percent. The rollout's stored state is the one source of both; it is read
// in the same transaction as the edit, and every transition changes it and
// the flag together, so the two never disagree.
func mergeControllerFields(f *flag.Flag, h rollout.Hold) {
	f.Tracked = h.Tracked
	if h.Owned {
		if f.Rollout == nil {
			f.Rollout = &flag.Rollout{}
		}
		f.Rollout.Percent = h.Percent
	}
}

// rolloutHold reads what the rollout of key decides of its flag, inside tx;
// a flag never rolled out has no hold.
func rolloutHold(ctx context.Context, tx store.Tx, key string) (rollout.Hold, error) {
	r, err := tx.Rollout(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return rollout.Hold{}, nil
	}
	if err != nil {
		return rollout.Hold{}, fmt.Errorf("read rollout %s: %w", key, err)
	}
	return holdOf(r)
}

// holdOf decodes a stored rollout and returns what it decides of its flag.
func holdOf(r store.Rollout) (rollout.Hold, error) {
	st, err := rollout.DecodeState(r.Key, r.State)
	if err != nil {
		return rollout.Hold{}, err
	}
	return st.Hold(), nil
}

// rolloutHolds reads the holds of every rollout inside tx, by flag key.
func rolloutHolds(ctx context.Context, tx store.Tx) (map[string]rollout.Hold, error) {
	rs, err := tx.Rollouts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	out := make(map[string]rollout.Hold, len(rs))
	for _, r := range rs {
		h, err := holdOf(r)
		if err != nil {
			return nil, err
		}
		out[r.Key] = h
	}
	return out, nil
}

// sameFlag reports whether two flags have the same content, ignoring the
// version.
func sameFlag(a, b flag.Flag) bool {
	a.Version, b.Version = 0, 0
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func (s *Server) putFlag(c *gin.Context) {
	key := c.Param("key")
	body, ok := ReadBody(c)
	if !ok {
		return
	}
	// BindJSON reads the body again from here; the plan check below needs
	// it as written too.
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	var f flag.Flag
	if !BindJSON(c, &f) {
		return
	}
	if f.Key == "" {
		f.Key = key
	}
	if f.Key != key {
		Fail(c, http.StatusBadRequest, fmt.Sprintf("key %q in the body differs from %q in the path", f.Key, key), "key")
		return
	}
	// The decoder took a null where a value is required as the zero value;
	// apply refuses it in flag.Parse.
	if err := flag.CheckNulls(key, body); err != nil {
		FailValidation(c, err)
		return
	}
	if err := flag.ValidateFlag(&f); err != nil {
		FailValidation(c, err)
		return
	}
	// A plan is refused when it is written, not when its rollout starts.
	if err := plan.ValidateFlags([]flag.Flag{f}); err != nil {
		FailValidation(c, err)
		return
	}
	expected, ok := expectedVersion(c, f.Version)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	var out flag.Flag
	created := false
	err := s.store.Update(ctx, ActorOf(c), func(tx store.Tx) error {
		old, err := tx.Flag(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := checkVersion(key, expected, old, exists); err != nil {
			return err
		}
		hold, err := rolloutHold(ctx, tx, key)
		if err != nil {
			return err
		}
		mergeControllerFields(&f, hold)
		if exists && sameFlag(f, old) {
			out = old
			return nil
		}
		created = !exists
		out, err = tx.PutFlag(ctx, f)
		return err
	})
	if err != nil {
		s.FailStore(c, err)
		return
	}
	s.hub.await(ctx, out.Version)
	c.Header("ETag", etag(out.Version))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, out)
}

// Deleted is the body of DELETE /api/v1/flags/{key}.
type Deleted struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
}

func (s *Server) deleteFlag(c *gin.Context) {
	key := c.Param("key")
	expected, ok := expectedVersion(c, 0)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	var version int64
	err := s.store.Update(ctx, ActorOf(c), func(tx store.Tx) error {
		old, err := tx.Flag(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("flag %q does not exist: %w", key, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := checkVersion(key, expected, old, true); err != nil {
			return err
		}
		version, err = tx.DeleteFlag(ctx, key)
		return err
	})
	if err != nil {
		s.FailStore(c, err)
		return
	}
	s.hub.await(ctx, version)
	c.JSON(http.StatusOK, Deleted{Key: key, Version: version})
}

// ApplyResult is the body of POST /api/v1/apply: what the flags file
// changes (dryRun) or changed.
type ApplyResult struct {
	DryRun    bool     `json:"dryRun"`
	Revision  int64    `json:"revision"`
	Created   []string `json:"created"`
	Updated   []string `json:"updated"`
	Deleted   []string `json:"deleted"`
	Unchanged []string `json:"unchanged"`
}

// diff computes what applying file to current, whose rollouts decide what
// holds says, does. It fills the changed flags into puts (with controller
// fields merged) and the keys to delete into dels.
func diff(current, file []flag.Flag, holds map[string]rollout.Hold, prune bool) (r ApplyResult, puts []flag.Flag, dels []string) {
	r = ApplyResult{Created: []string{}, Updated: []string{}, Deleted: []string{}, Unchanged: []string{}}
	have := make(map[string]flag.Flag, len(current))
	for _, f := range current {
		have[f.Key] = f
	}
	inFile := make(map[string]bool, len(file))
	for _, f := range file {
		inFile[f.Key] = true
		old, exists := have[f.Key]
		mergeControllerFields(&f, holds[f.Key])
		switch {
		case !exists:
			r.Created = append(r.Created, f.Key)
			puts = append(puts, f)
		case sameFlag(f, old):
			r.Unchanged = append(r.Unchanged, f.Key)
		default:
			r.Updated = append(r.Updated, f.Key)
			puts = append(puts, f)
		}
	}
	for _, f := range current {
		if !inFile[f.Key] {
			if prune {
				r.Deleted = append(r.Deleted, f.Key)
				dels = append(dels, f.Key)
			} else {
				r.Unchanged = append(r.Unchanged, f.Key)
			}
		}
	}
	for _, l := range [][]string{r.Created, r.Updated, r.Deleted, r.Unchanged} {
		slices.Sort(l)
	}
	return r, puts, dels
}

func boolQuery(c *gin.Context, name string) (bool, bool) {
	v := c.Query(name)
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		Fail(c, http.StatusBadRequest, fmt.Sprintf("query parameter %s=%q: want true or false", name, v), name)
		return false, false
	}
	return b, true
}

func (s *Server) apply(c *gin.Context) {
	dryRun, ok := boolQuery(c, "dryRun")
	if !ok {
		return
	}
	prune, ok := boolQuery(c, "prune")
	if !ok {
		return
	}
	if !checkContentType(c, yamlTypes) {
		return
	}
	body, ok := ReadBody(c)
	if !ok {
		return
	}
	if err := checkText(body); err != nil {
		Fail(c, http.StatusBadRequest, err.Error(), "")
		return
	}
	file, err := flag.ParseFileOrFlag(body)
	if err != nil {
		if isFieldError(err) {
			FailValidation(c, err)
			return
		}
		msg, field := err.Error(), ""
		if inner := errors.Unwrap(err); inner != nil {
			if m, f := describeJSONError(inner); f != "" {
				msg, field = "parse flags: "+m, f
			}
		}
		Fail(c, http.StatusBadRequest, msg, field)
		return
	}
	if err := plan.ValidateFlags(file.Flags); err != nil {
		FailValidation(c, err)
		return
	}
	ctx := c.Request.Context()
	var r ApplyResult
	// A dry run reads in a transaction too, and writes nothing in it, so that
	// the flags and their rollouts it compares are read consistently.
	err = s.store.Update(ctx, ActorOf(c), func(tx store.Tx) error {
		current, err := tx.Flags(ctx)
		if err != nil {
			return err
		}
		holds, err := rolloutHolds(ctx, tx)
		if err != nil {
			return err
		}
		var puts []flag.Flag
		var dels []string
		r, puts, dels = diff(current, file.Flags, holds, prune)
		r.DryRun = dryRun
		if dryRun {
			r.Revision = tx.Revision()
			return nil
		}
		for _, f := range puts {
			if _, err := tx.PutFlag(ctx, f); err != nil {
				return err
			}
		}
		for _, k := range dels {
			if _, err := tx.DeleteFlag(ctx, k); err != nil {
				return err
			}
		}
		r.Revision = tx.Revision()
		return nil
	})
	if err != nil {
		s.FailStore(c, err)
		return
	}
	if !dryRun {
		s.hub.await(ctx, r.Revision)
	}
	c.JSON(http.StatusOK, r)
}

func isFieldError(err error) bool {
	var fe *flag.FieldError
	return errors.As(err, &fe)
}

// AuditList is the body of GET /api/v1/audit.
type AuditList struct {
	Entries []store.AuditEntry `json:"entries"`
}

func (s *Server) listAudit(c *gin.Context) {
	q := store.AuditQuery{Flag: c.Query("flag")}
	for _, p := range []struct {
		name string
		dst  *int64
		max  int64
	}{{"before", &q.BeforeID, 1<<63 - 1}, {"limit", nil, 1000}} {
		v := c.Query(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n > p.max {
			Fail(c, http.StatusBadRequest, fmt.Sprintf("query parameter %s=%q: want a whole number from 1 to %d", p.name, v, p.max), p.name)
			return
		}
		if p.dst != nil {
			*p.dst = n
		} else {
			q.Limit = int(n)
		}
	}
	entries, err := s.store.Audit(c.Request.Context(), q)
	if err != nil {
		s.FailStore(c, err)
		return
	}
	c.JSON(http.StatusOK, AuditList{Entries: entries})
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }
