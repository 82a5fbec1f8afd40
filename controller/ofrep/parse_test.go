package ofrep

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{``, ` `, `{}`, `{"context":{"targetingKey":"u","plan":"gold","n":1.5}}`, `{"context":[]}`,
		`nope`, `{"context":{"targetingKey":5}}`, `{"context":null}`, `{"context":{"targetingKey":null}}`, `[1]`, `{"context":"x"}`,
		`{"context":{"targetingKey":"u","targetingKey":"v"}}`, `{"context":{"plan":"a\u0000"}}`, "{\"context\":{\"p\":\"\xff\"}}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, fail := parseRequest(body)
		if fail != nil {
			if (fail.ErrorCode != codeParseError && fail.ErrorCode != codeInvalidContext) || fail.ErrorDetails == "" {
				t.Fatalf("failure %+v for %q", fail, body)
			}
			return
		}
		if !json.Valid(r.canonical) {
			t.Fatalf("canonical context %q is not JSON", r.canonical)
		}
		// Strict input: no NUL character and no invalid UTF-8 (which
		// encoding/json writes as U+FFFD) reaches the attributes.
		if strings.Contains(string(r.canonical), `\u0000`) || !utf8.Valid(body) {
			t.Fatalf("%q accepted: %s", body, r.canonical)
		}
		if _, ok := r.ctx.Attributes["targetingKey"]; ok {
			t.Fatalf("targetingKey left among the attributes of %q", body)
		}
		// The same request always gets the same canonical form, so the
		// bulk ETag is stable.
		again, _ := parseRequest(body)
		if string(again.canonical) != string(r.canonical) {
			t.Fatalf("canonical form of %q not stable: %q then %q", body, r.canonical, again.canonical)
		}
	})
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 3, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.allow("svc"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.allow("svc")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.allow("other"); !ok {
		t.Fatal("another token shares the bucket")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow("svc"); !ok {
		t.Fatal("refused after the wait it announced")
	}
	now = now.Add(time.Hour)
	for i := range 3 {
		if ok, _ := l.allow("svc"); !ok {
			t.Fatalf("request %d after an hour refused: the bucket must refill to the burst", i)
		}
	}
	if ok, _ := l.allow("svc"); ok {
		t.Fatal("the bucket filled beyond the burst")
	}
}
