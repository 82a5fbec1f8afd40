package runner

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/rollout"
)

// parseRaw parses a raw query as a request would carry it.
func parseRaw(raw string, find bool) (PageQuery, *ParamError) {
	g := &gin.Context{Request: &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/", RawQuery: raw}}}
	return ParsePageQuery(g, find)
}

// FuzzParsePageQuery: any query either is refused naming limit, state or
// continue, or parses to a limit in bounds and known states; and the
// continue token of a page, sent back with the same query, resumes after
// the same key.
func FuzzParsePageQuery(f *testing.F) {
	for _, s := range []string{"", "limit=5", "limit=0", "state=paused,promoted&state=paused", "find=Check%20out", "continue=e30",
		"limit=1001", "state=,", "continue=" + continueToken{After: "a", State: "paused"}.encode() + "&state=paused"} {
		f.Add(s, "k-after", true)
	}
	f.Fuzz(func(t *testing.T, raw, after string, find bool) {
		q, bad := parseRaw(raw, find)
		if bad != nil {
			if !slices.Contains([]string{"limit", "state", "continue"}, bad.Name) || !strings.Contains(bad.Msg, bad.Name) {
				t.Fatalf("%q: %+v does not name a parameter it reads", raw, bad)
			}
			return
		}
		if q.Limit < 1 || q.Limit > MaxListLimit {
			t.Fatalf("%q: limit %d", raw, q.Limit)
		}
		for _, p := range q.Phases {
			if !slices.Contains(rollout.Phases, p) {
				t.Fatalf("%q: unknown state %q", raw, p)
			}
		}
		if !find && q.Find != "" {
			t.Fatalf("%q: find %q read by a list that does not take it", raw, q.Find)
		}
		// A page that ends after the key after: its token, with the same
		// query, resumes there. Keys are valid UTF-8 (the flag model
		// allows no other), which JSON carries as they are.
		if !utf8.ValidString(after) {
			return
		}
		_, tok, err := ScanPage(PageQuery{Limit: 1, Phases: q.Phases, Find: q.Find, After: q.After},
			func(string, int) ([]string, error) { return []string{after, after}, nil },
			func(k string) string { return k }, func(k string) (string, bool) { return k, true })
		if err != nil || tok == "" {
			t.Fatalf("%q: a page with more to follow: token %q, %v", raw, tok, err)
		}
		v, err := url.ParseQuery(raw)
		if err != nil {
			return // gin read what it could of it; the token is added to a clean query below only
		}
		v.Set("continue", tok)
		next, bad := parseRaw(v.Encode(), find)
		if bad != nil || next.After != after {
			t.Fatalf("%q: the next page's query %q: after %q, %+v; want after %q", raw, v.Encode(), next.After, bad, after)
		}
	})
}
