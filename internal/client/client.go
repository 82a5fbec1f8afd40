// Package client is a small Go client of the controller's admin API, used by
// the vigil CLI.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// Client calls one controller with one token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the controller at server ("http://host:8080"; a
// bare "host:port" means http).
func New(serverURL, token string) (*Client, error) {
	if serverURL == "" {
		return nil, errors.New("no server: pass --server or set VIGIL_SERVER")
	}
	if !strings.Contains(serverURL, "://") {
		serverURL = "http://" + serverURL
	}
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server %q is not a URL such as http://localhost:8080", serverURL)
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Error is an error answer from the controller.
type Error struct {
	Status int
	server.ErrorBody
}

// Error describes the problem in one line.
func (e *Error) Error() string {
	msg := e.ErrorBody.Error
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Field != "" && !strings.Contains(msg, e.Field) {
		msg += " (field " + e.Field + ")"
	}
	for _, p := range e.Errors[min(1, len(e.Errors)):] {
		msg += "\n  flag " + p.Flag + ": " + p.Field + ": " + p.Message
	}
	return msg
}

// Request is one API call for Do.
type Request struct {
	Method string
	Path   string // such as "/api/v1/flags"; may carry a query
	// Body is sent as is when it is []byte, and as JSON otherwise.
	Body   any
	Header http.Header
}

// Do sends req and decodes a 2xx answer's JSON into out, when out is not
// nil. Other answers become an *Error with the controller's message.
func (c *Client) Do(ctx context.Context, req Request, out any) error {
	var body io.Reader
	switch b := req.Body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return err
		}
		body = bytes.NewReader(js)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, c.base+req.Path, body)
	if err != nil {
		return err
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil && hr.Header.Get("Content-Type") == "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() == nil {
			// Most often the wrong server, or none running.
			err = fmt.Errorf("%w (is the controller at %s? set VIGIL_SERVER or pass --server)", err, c.base)
		}
		return fmt.Errorf("%s %s: %w", req.Method, c.base+req.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", req.Method, req.Path, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.ErrorBody) != nil || e.ErrorBody.Error == "" {
			e.ErrorBody.Error = fmt.Sprintf("%s %s: %s", req.Method, req.Path, resp.Status)
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.ErrorBody.Error += authHint(c.token)
		}
		return e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", req.Method, req.Path, err)
		}
	}
	return nil
}

// authHint says where the CLI takes its token from, for an answer 401.
func authHint(token string) string {
	if token == "" {
		return " (no token given: set VIGIL_TOKEN or pass --token)"
	}
	return " (check the token in VIGIL_TOKEN or --token, and that VIGIL_SERVER or --server is the controller that issued it)"
}

func reasonHeader(reason string) http.Header {
	h := http.Header{}
	if reason != "" {
		h.Set(server.ReasonHeader, reason)
	}
	return h
}

// Flags lists every flag.
func (c *Client) Flags(ctx context.Context) (server.FlagList, error) {
	var l server.FlagList
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/flags"}, &l)
	return l, err
}

// Flag gets one flag.
func (c *Client) Flag(ctx context.Context, key string) (flag.Flag, error) {
	var f flag.Flag
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/flags/" + url.PathEscape(key)}, &f)
	return f, err
}

// PutFlag creates or replaces a flag. A positive ifVersion makes the change
// conditional on the flag's current version.
func (c *Client) PutFlag(ctx context.Context, f flag.Flag, ifVersion int64, reason string) (flag.Flag, error) {
	h := reasonHeader(reason)
	if ifVersion > 0 {
		h.Set("If-Match", `"`+strconv.FormatInt(ifVersion, 10)+`"`)
	}
	var out flag.Flag
	err := c.Do(ctx, Request{Method: "PUT", Path: "/api/v1/flags/" + url.PathEscape(f.Key), Body: f, Header: h}, &out)
	return out, err
}

// DeleteFlag deletes a flag, conditionally on its version when ifVersion is
// positive.
func (c *Client) DeleteFlag(ctx context.Context, key string, ifVersion int64, reason string) (server.Deleted, error) {
	h := reasonHeader(reason)
	if ifVersion > 0 {
		h.Set("If-Match", `"`+strconv.FormatInt(ifVersion, 10)+`"`)
	}
	var out server.Deleted
	err := c.Do(ctx, Request{Method: "DELETE", Path: "/api/v1/flags/" + url.PathEscape(key), Header: h}, &out)
	return out, err
}

// Apply sends a whole flags file (YAML or JSON).
func (c *Client) Apply(ctx context.Context, file []byte, dryRun, prune bool, reason string) (server.ApplyResult, error) {
	q := url.Values{}
	if dryRun {
		q.Set("dryRun", "true")
	}
	if prune {
		q.Set("prune", "true")
	}
	path := "/api/v1/apply"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	h := reasonHeader(reason)
	h.Set("Content-Type", "application/yaml")
	var out server.ApplyResult
	err := c.Do(ctx, Request{Method: "POST", Path: path, Body: file, Header: h}, &out)
	return out, err
}

// Audit lists audit entries, newest first, of one flag when key is set.
func (c *Client) Audit(ctx context.Context, key string, limit int) ([]store.AuditEntry, error) {
	q := url.Values{}
	if key != "" {
		q.Set("flag", key)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out server.AuditList
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/audit?" + q.Encode()}, &out)
	return out.Entries, err
}

// CreateToken mints a token; the answer holds its secret, shown only once.
func (c *Client) CreateToken(ctx context.Context, name string, role store.Role) (server.CreatedToken, error) {
	var out server.CreatedToken
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/tokens", Body: server.TokenRequest{Name: name, Role: role}}, &out)
	return out, err
}

// Tokens lists the stored tokens, without secrets.
func (c *Client) Tokens(ctx context.Context) ([]store.Token, error) {
	var out server.TokenList
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/tokens"}, &out)
	return out.Tokens, err
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	return c.Do(ctx, Request{Method: "DELETE", Path: "/api/v1/tokens/" + url.PathEscape(name)}, nil)
}

// Rollouts lists the rollouts in brief, by key: those in one of states, or
// every one when states is empty. It reads pageSize at a time (the
// controller's default when 0), following each page's continue token to
// the last.
func (c *Client) Rollouts(ctx context.Context, states []rollout.Phase, pageSize int) ([]runner.Summary, error) {
	out := []runner.Summary{}
	err := c.RolloutPages(ctx, states, pageSize, func(page []runner.Summary) bool {
		out = append(out, page...)
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RolloutPages reads the rollouts as Rollouts does and gives each page to
// each, in order, until each returns false or the pages end. A page may be
// empty and still not be the last: the controller scans a bounded number
// of rollouts per request when states filters them.
func (c *Client) RolloutPages(ctx context.Context, states []rollout.Phase, pageSize int, each func([]runner.Summary) bool) error {
	q := url.Values{}
	for _, s := range states {
		q.Add("state", string(s))
	}
	if pageSize > 0 {
		q.Set("limit", strconv.Itoa(pageSize))
	}
	for {
		var page runner.RolloutList[runner.Summary]
		if err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/rollouts?" + q.Encode()}, &page); err != nil {
			return err
		}
		if !each(page.Rollouts) || page.Continue == "" {
			return nil
		}
		if page.Continue == q.Get("continue") {
			return fmt.Errorf("list rollouts: the controller answered the continue token %q with itself", page.Continue)
		}
		q.Set("continue", page.Continue)
	}
}
