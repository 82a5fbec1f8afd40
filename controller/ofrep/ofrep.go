// Package ofrep serves the OpenFeature Remote Evaluation Protocol (OFREP)
// on the controller, so that a service in any language with an OpenFeature
// SDK and its OFREP provider can use Vigil with no Vigil code:
//
//	POST /ofrep/v1/evaluate/flags/{key}  one flag
//	POST /ofrep/v1/evaluate/flags        every flag, with ETag and 304
//
// Requests carry `{"context": {"targetingKey": "...", ...attributes}}` and a
// bearer token with the sdk role (admin and reader tokens may read too).
// Evaluation is the SDKs' own (sdk/flag), over flags the extension keeps in
// memory and refreshes when the store changes. Each token is rate limited;
// over the limit the answer is 429 with Retry-After.
//
// Mount it with server.Config.Extensions = append(..., ofrep.Extension(cfg)).
package ofrep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// Config configures the OFREP endpoints. Zero fields take the defaults in
// their comments.
type Config struct {
	// RequestsPerSecond is each token's sustained request rate; default
	// 1000. A server-side OFREP provider makes one request per evaluation.
	RequestsPerSecond float64
	// Burst is how many requests a token may make at once above the rate;
	// default 2 × RequestsPerSecond.
	Burst int
	// Resync is how often the flags are compared with the store even
	// without a change notification; default 5s.
	Resync time.Duration
}

func (c Config) withDefaults() Config {
	if c.RequestsPerSecond <= 0 {
		c.RequestsPerSecond = 1000
	}
	if c.Burst <= 0 {
		c.Burst = int(math.Ceil(2 * c.RequestsPerSecond))
	}
	if c.Resync <= 0 {
		c.Resync = 5 * time.Second
	}
	return c
}

// OFREP error codes.
const (
	codeParseError          = "PARSE_ERROR"
	codeTargetingKeyMissing = "TARGETING_KEY_MISSING"
	codeInvalidContext      = "INVALID_CONTEXT"
	codeFlagNotFound        = "FLAG_NOT_FOUND"
	codeGeneral             = "GENERAL"
)

// Success is a successful evaluation of one flag.
type Success struct {
	Key      string         `json:"key"`
	Value    any            `json:"value"`
	Reason   string         `json:"reason"`
	Variant  string         `json:"variant"`
	Metadata map[string]any `json:"metadata"`
}

// Failure is a failed evaluation: of one flag (with Key), or of a whole
// bulk request.
type Failure struct {
	Key          string `json:"key,omitempty"`
	ErrorCode    string `json:"errorCode"`
	ErrorDetails string `json:"errorDetails"`
}

// Bulk is the answer to a bulk evaluation: one Success or Failure per flag,
// by key.
type Bulk struct {
	Flags []any `json:"flags"`
}

// Extension returns the server extension that registers the endpoints and
// keeps the flags in sync with the store.
func Extension(cfg Config) server.Extension {
	return func(h *server.Host) error {
		e := newEndpoints(cfg.withDefaults(), h.Store, h.Logger)
		h.Go("ofrep flags", e.sync)
		g := h.Group("/ofrep/v1", store.RoleAdmin, store.RoleReader, store.RoleSDK)
		g.Use(e.limit)
		g.POST("/evaluate/flags/:key", e.single)
		g.POST("/evaluate/flags", e.bulk)
		return nil
	}
}

type endpoints struct {
	cfg   Config
	store store.Store
	log   *slog.Logger
	snap  atomic.Pointer[flag.Snapshot]
	rl    *limiter
}

func newEndpoints(cfg Config, st store.Store, log *slog.Logger) *endpoints {
	return &endpoints{cfg: cfg, store: st, log: log, rl: newLimiter(cfg.RequestsPerSecond, cfg.Burst, time.Now)}
}

// sync loads the flags and reloads them whenever the store may have
// changed, until ctx ends.
func (e *endpoints) sync(ctx context.Context) error {
	watch := e.store.Watch(ctx)
	tick := time.NewTicker(e.cfg.Resync)
	defer tick.Stop()
	for {
		if err := e.reload(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("ofrep: reload flags", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-watch:
			if !ok {
				return nil
			}
		case <-tick.C:
		}
	}
}

// reload brings the flags up to the store: the changes since the loaded
// revision, applied in one copy, or the whole snapshot when none is loaded
// yet. Reading the whole store at every change would cost O(flags) per
// change, which a loop moving thousands of rollouts makes O(flags²).
func (e *endpoints) reload(ctx context.Context) error {
	if cur := e.snap.Load(); cur != nil {
		rev, changes, err := e.store.Changes(ctx, cur.Revision())
		if err != nil {
			return fmt.Errorf("read changes: %w", err)
		}
		if rev <= cur.Revision() {
			return nil
		}
		var put []flag.Flag
		var del []string
		for _, c := range changes {
			if c.Deleted {
				del = append(del, c.Key)
			} else {
				put = append(put, c.Flag)
			}
		}
		next, err := cur.Update(rev, put, del)
		if err != nil {
			// The store validates every write, so this is a flag from a
			// newer controller; serve the others.
			e.log.Warn("ofrep: flags in the store rejected", "err", err)
		}
		e.snap.Store(next)
		return nil
	}
	s, err := e.store.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	empty, _ := flag.NewSnapshot(0, nil)
	snap, err := empty.Update(s.Revision, s.Flags, nil)
	if err != nil {
		e.log.Warn("ofrep: flags in the store rejected", "err", err)
	}
	e.snap.Store(snap)
	return nil
}

// request is a parsed evaluation request.
type request struct {
	ctx flag.Context
	// canonical is the context re-encoded with sorted keys, for ETags.
	canonical []byte
}

// parseRequest reads {"context": {...}}. An empty body means no context.
func parseRequest(body []byte) (request, *Failure) {
	var r request
	if len(strings.TrimSpace(string(body))) == 0 {
		r.canonical = []byte("{}")
		return r, nil
	}
	// As strict as the admin API: a key given twice would let the last
	// win, and NUL or invalid UTF-8 pass into attributes.
	if err := server.CheckJSON(body); err != nil {
		return r, &Failure{ErrorCode: codeParseError, ErrorDetails: "invalid request body: " + err.Error()}
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return r, &Failure{ErrorCode: codeParseError, ErrorDetails: "request body is not a JSON object: " + err.Error()}
	}
	attrs := map[string]any{}
	if raw, ok := doc["context"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &attrs); err != nil {
			return r, &Failure{ErrorCode: codeInvalidContext, ErrorDetails: "context must be a JSON object of attributes"}
		}
	}
	if tk, ok := attrs["targetingKey"]; ok {
		s, isString := tk.(string)
		if !isString && tk != nil {
			return r, &Failure{ErrorCode: codeInvalidContext, ErrorDetails: fmt.Sprintf("context.targetingKey must be a string, got %s", jsonType(tk))}
		}
		r.ctx.Key = s
		delete(attrs, "targetingKey")
	}
	r.ctx.Attributes = attrs
	r.canonical, _ = json.Marshal(map[string]any{"k": r.ctx.Key, "a": attrs})
	return r, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

var reasons = map[flag.Reason]string{
	flag.ReasonDisabled:       "DISABLED",
	flag.ReasonTargetingMatch: "TARGETING_MATCH",
	flag.ReasonSplit:          "SPLIT",
	flag.ReasonDefault:        "DEFAULT",
}

// evaluate answers one flag: a Success, or a Failure with its HTTP status.
func evaluate(snap *flag.Snapshot, key string, ctx flag.Context) (any, int) {
	d := snap.Evaluate(key, ctx)
	switch d.ErrorType {
	case "":
		return Success{Key: key, Value: d.Value, Reason: reasons[d.Reason], Variant: d.Variant,
			Metadata: map[string]any{"version": d.Version, "tracked": d.Tracked}}, http.StatusOK
	case flag.ErrorFlagNotFound:
		return Failure{Key: key, ErrorCode: codeFlagNotFound, ErrorDetails: fmt.Sprintf("flag %q does not exist", key)}, http.StatusNotFound
	case flag.ErrorTargetingKeyMissing:
		return Failure{Key: key, ErrorCode: codeTargetingKeyMissing,
			ErrorDetails: fmt.Sprintf("flag %q splits units by a rollout and needs context.targetingKey", key)}, http.StatusBadRequest
	default:
		return Failure{Key: key, ErrorCode: codeGeneral, ErrorDetails: fmt.Sprintf("flag %q: %s", key, d.ErrorType)}, http.StatusInternalServerError
	}
}

// body reads the request body, which server.Config.MaxBodyBytes bounds,
// refusing one that says it is not JSON; a refusal names the flag key of a
// single evaluation.
func body(c *gin.Context, key string) ([]byte, bool) {
	if ct := c.GetHeader("Content-Type"); !server.JSONContentType(ct) {
		c.AbortWithStatusJSON(http.StatusUnsupportedMediaType, Failure{Key: key, ErrorCode: codeParseError, ErrorDetails: fmt.Sprintf("Content-Type %q: send application/json", ct)})
		return nil, false
	}
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			c.AbortWithStatusJSON(http.StatusRequestEntityTooLarge, Failure{Key: key, ErrorCode: codeParseError, ErrorDetails: err.Error()})
		} else {
			c.AbortWithStatusJSON(http.StatusBadRequest, Failure{Key: key, ErrorCode: codeParseError, ErrorDetails: "read body: " + err.Error()})
		}
		return nil, false
	}
	return b, true
}

// loaded returns the flags, or answers 503 before the first load.
func (e *endpoints) loaded(c *gin.Context) *flag.Snapshot {
	snap := e.snap.Load()
	if snap == nil {
		c.Header("Retry-After", "1")
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, Failure{ErrorCode: codeGeneral, ErrorDetails: "flags not loaded yet; retry"})
	}
	return snap
}

func (e *endpoints) single(c *gin.Context) {
	key := c.Param("key")
	b, ok := body(c, key)
	if !ok {
		return
	}
	req, fail := parseRequest(b)
	if fail != nil {
		fail.Key = key
		c.AbortWithStatusJSON(http.StatusBadRequest, fail)
		return
	}
	snap := e.loaded(c)
	if snap == nil {
		return
	}
	res, status := evaluate(snap, key, req.ctx)
	c.JSON(status, res)
}

func (e *endpoints) bulk(c *gin.Context) {
	b, ok := body(c, "")
	if !ok {
		return
	}
	req, fail := parseRequest(b)
	if fail != nil {
		c.AbortWithStatusJSON(http.StatusBadRequest, fail)
		return
	}
	snap := e.loaded(c)
	if snap == nil {
		return
	}
	// The answer depends on the flags and on the context: the ETag names
	// both.
	sum := sha256.Sum256(req.canonical)
	tag := `"` + strconv.FormatInt(snap.Revision(), 10) + "-" + hex.EncodeToString(sum[:8]) + `"`
	c.Header("ETag", tag)
	c.Header("Cache-Control", "no-cache")
	if server.MatchesETag(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		return
	}
	flags := snap.Flags()
	out := Bulk{Flags: make([]any, 0, len(flags))}
	for _, f := range flags {
		res, _ := evaluate(snap, f.Key, req.ctx)
		out.Flags = append(out.Flags, res)
	}
	c.JSON(http.StatusOK, out)
}

// limit answers 429 with Retry-After to a token over its rate.
func (e *endpoints) limit(c *gin.Context) {
	ok, wait := e.rl.allow(server.ActorOf(c).Name)
	if !ok {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		c.AbortWithStatusJSON(http.StatusTooManyRequests, Failure{ErrorCode: codeGeneral,
			ErrorDetails: fmt.Sprintf("over the rate limit of %g requests per second; retry after %s", e.cfg.RequestsPerSecond, wait.Round(time.Millisecond))})
		return
	}
	c.Next()
}

// limiter is a token bucket per key.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// allow takes a token for key, or says how long until one is available.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}
