package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// checkJSONByTokens is the check checkJSON replaced, a walk through
// json.Decoder.Token: the reference that the byte walker must agree with
// on every valid JSON body.
func checkJSONByTokens(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		path   string
		object bool
		keys   map[string]bool
		index  int
		key    string
		hasKey bool
	}
	var stack []*frame
	here := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.object {
			return join(f.path, f.key)
		}
		return f.path + "[" + strconv.Itoa(f.index) + "]"
	}
	done := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.hasKey = false
		} else {
			f.index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return nil
		}
		if len(stack) > 0 {
			if f := stack[len(stack)-1]; f.object && !f.hasKey {
				if d, ok := tok.(json.Delim); ok && d == '}' {
					stack = stack[:len(stack)-1]
					done()
					continue
				}
				key, _ := tok.(string)
				path := join(f.path, key)
				if strings.ContainsRune(key, 0) {
					return &fieldError{path, "a key holds a NUL character"}
				}
				if f.keys[key] {
					return &fieldError{path, "the key is given twice"}
				}
				f.keys[key], f.key, f.hasKey = true, key, true
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{path: here(), object: true, keys: map[string]bool{}})
			case '[':
				stack = append(stack, &frame{path: here()})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if strings.ContainsRune(t, 0) {
				return &fieldError{here(), "the string holds a NUL character"}
			}
			done()
		default:
			done()
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// manyKeys is an object with n distinct keys and then, when dup is set,
// the first key again.
func manyKeys(n int, dup bool) string {
	var sb strings.Builder
	sb.WriteString(`{"list":[{`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	if dup {
		sb.WriteString(`,"k0":0`)
	}
	sb.WriteString(`}]}`)
	return sb.String()
}

var strictSeeds = []string{
	`{"key":"x","variants":{"on":true,"off":false},"control":"off","rollout":{"percent":5}}`,
	`{"key":"x","key":"y"}`,
	`{"a":{"b":1},"a":2}`,
	`{"a":{"b":1,"b":2}}`,
	`{"a":{"b":1},"c":{"b":2}}`,
	`{"a":[{"x":1},{"x":1,"y":"\u0000"}]}`,
	`{"a":[[],[{}],[{"b\u0000":1}]]}`,
	`{"\u0061":1,"a":2}`,
	`{"a\\u0000":1,"b":"\\u0000"}`,
	`{"a":"\"\u0000"}`,
	`{"a":"x\/y","a\/":1,"a/":2}`,
	`{"\ud800":1,"\ufffd":2}`,
	`[1, "two", null, true, {"t": [ ]}, -0.5e3]`,
	` { "s" : "a b" , "s" : 1 } `,
	`"\u0000"`, `null`, `{}`, `[]`, `{"a":}`, `{"a" 1}`, `[1,]`, `{"a":1,}`,
	manyKeys(15, true), manyKeys(16, true), manyKeys(17, true), manyKeys(40, false), manyKeys(40, true),
}

// TestCheckJSON: the byte walker finds what the token walk found, with the
// same field and message, and lets syntax errors through to the decoder.
func TestCheckJSON(t *testing.T) {
	for _, c := range []struct {
		body, field, msg string
	}{
		{`{"key":"x","key":"y"}`, "key", "the key is given twice"},
		{`{"a":{"b":1,"b":2}}`, "a.b", "the key is given twice"},
		{`{"a":{"b":1},"c":{"b":2}}`, "", ""},
		{`{"a":[{"x":1},{"x":1,"y":"\u0000"}]}`, "a[1].y", "the string holds a NUL character"},
		{`{"a":[[],[{}],[{"b\u0000":1}]]}`, "a[2][0].b\x00", "a key holds a NUL character"},
		{`{"\u0061":1,"a":2}`, "a", "the key is given twice"},
		{`{"a\\u0000":1,"b":"\\u0000"}`, "", ""},
		{`{"a":"x\/y","a\/":1,"a/":2}`, "a/", "the key is given twice"},
		{manyKeys(17, true), "list[0].k0", "the key is given twice"},
		{manyKeys(40, false), "", ""},
		{`{"a":1,"a":`, "a", "the key is given twice"},
		{`{"a":tru,"b":1}`, "", ""},
		{`{"a":1,}`, "", ""},
		{strings.Repeat("[", maxJSONDepth+1), "", ""},
	} {
		err := checkJSON([]byte(c.body))
		var fe *fieldError
		switch {
		case c.msg == "" && err != nil:
			t.Errorf("%.60s: %v, want nothing", c.body, err)
		case c.msg != "" && (!errors.As(err, &fe) || fe.field != c.field || fe.msg != c.msg):
			t.Errorf("%.60s: %v, want %s: %s", c.body, err, c.field, c.msg)
		}
	}
}

// FuzzCheckJSON: on every valid JSON body the byte walker and the token
// walk agree, field and message; on any body the walker does not panic.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range strictSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := checkJSON(body)
		if !json.Valid(body) {
			return
		}
		want := checkJSONByTokens(body)
		if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
			t.Fatalf("%q: walker %v, tokens %v", body, got, want)
		}
	})
}

// BenchmarkCheckJSON compares the byte walker with the token walk it
// replaced on the admin PUT benchmark's body.
func BenchmarkCheckJSON(b *testing.B) {
	body := []byte(`{"key":"f042","variants":{"off":false,"on":true},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":42}}`)
	for _, c := range []struct {
		name  string
		check func([]byte) error
	}{{"walker", checkJSON}, {"tokens", checkJSONByTokens}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.check(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
