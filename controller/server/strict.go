package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// Media types of request bodies: JSON everywhere, and YAML too for a
// flags file.
var (
	jsonTypes = []string{"application/json"}
	yamlTypes = []string{"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
)

// checkContentType answers 415 and returns false when the request says
// its body is something other than one of types. A request that says
// nothing is taken at its body's word.
func checkContentType(c *gin.Context, types []string) bool {
	ct := c.GetHeader("Content-Type")
	if mediaTypeIn(ct, types) {
		return true
	}
	Fail(c, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send %s", ct, strings.Join(types, " or ")), "Content-Type")
	return false
}

// JSONContentType reports whether a request's Content-Type header allows a
// JSON body: application/json, a +json type, or none.
func JSONContentType(ct string) bool { return mediaTypeIn(ct, jsonTypes) }

func mediaTypeIn(ct string, types []string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (slices.Contains(types, mt) || strings.HasSuffix(mt, "+json") && slices.Contains(types, "application/json"))
}

// CheckJSON refuses what encoding/json would take silently in a request
// body: invalid UTF-8, a NUL byte, a key given twice in one object (the last
// would win), and a NUL character written \u0000 in a key or a string. Its
// error says where: at a byte offset, or in a field, which it begins with.
// Syntax errors are left to the decoder, which reports them with their
// offset.
func CheckJSON(body []byte) error {
	if err := checkText(body); err != nil {
		return err
	}
	return checkJSON(body)
}

// checkText refuses a body that is not valid UTF-8 or holds a NUL byte:
// decoders would pass the first on as U+FFFD and the second into names.
func checkText(body []byte) error {
	if i := bytes.IndexByte(body, 0); i >= 0 {
		return fmt.Errorf("request body holds a NUL byte at byte %d", i)
	}
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("request body is not valid UTF-8 at byte %d", i)
		}
		i += size
	}
	return nil
}

// fieldError is a problem with one field of a JSON body.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// checkJSON refuses what encoding/json accepts silently: a key given twice
// in one object (the last would win) and a NUL character, written \u0000,
// in a key or a string. The error names the field. Syntax errors are left
// to the decoder, which reports them with their offset: at one, checkJSON
// returns nil.
//
// It walks the bytes once by hand: json.Decoder.Token allocates for every
// token, which cost the admin PUT a fifth of its throughput. Keys are
// compared as written, and unescaped only when they hold a backslash.
func checkJSON(body []byte) error {
	// Room for a flag's nesting and keys, so that a usual body needs no
	// more.
	var frames [8]jsonFrame
	var keys [16][]byte
	w := jsonWalker{b: body, frames: frames[:0], keys: keys[:0]}
	err := w.walk()
	if err == errJSONSyntax {
		return nil
	}
	return err
}

// maxJSONDepth is where checkJSON stops looking: encoding/json refuses a
// value nested deeper than 10,000, and the walk need not hold a stack for
// what it refuses.
const maxJSONDepth = 10000

// smallObject is how many keys an object's duplicates are looked for among
// by comparing each with each; an object with more gets a set.
const smallObject = 16

// errJSONSyntax stops a walk at a syntax error, which the decoder reports.
var errJSONSyntax = errors.New("json syntax")

// jsonWalker is checkJSON's state.
type jsonWalker struct {
	b      []byte
	i      int
	frames []jsonFrame
	// keys holds the keys of the open objects, outermost first: each
	// object's keys so far (its last the one whose value is being read),
	// then its open child's. An object with a set keeps only its last key
	// here.
	keys [][]byte
}

// jsonFrame is an open object or array.
type jsonFrame struct {
	object   bool
	keysFrom int                 // where this object's keys start in keys
	index    int                 // the array's index of the value being read
	seen     map[string]struct{} // the keys of an object with many
}

// walk reads one JSON value and what it holds.
func (w *jsonWalker) walk() error {
	for {
		opened, err := w.value()
		if err != nil {
			return err
		}
		if opened {
			continue // to the container's first value
		}
		// A value ended: close the containers that end with it and find
		// where the next value starts.
		for {
			if len(w.frames) == 0 {
				return nil // trailing data is the decoder's to refuse
			}
			w.space()
			if w.i >= len(w.b) {
				return errJSONSyntax
			}
			f := &w.frames[len(w.frames)-1]
			c := w.b[w.i]
			w.i++
			if c == ',' {
				if f.object {
					if err := w.key(); err != nil {
						return err
					}
				} else {
					f.index++
				}
				break
			}
			if f.object && c == '}' || !f.object && c == ']' {
				w.pop()
				continue
			}
			return errJSONSyntax
		}
	}
}

// value reads the value at w.i: a scalar whole, or the start of a
// container, which it opens (reading an object's first key) and reports.
// An empty container is read whole.
func (w *jsonWalker) value() (opened bool, err error) {
	w.space()
	if w.i >= len(w.b) {
		return false, errJSONSyntax
	}
	switch c := w.b[w.i]; c {
	case '{', '[':
		w.i++
		if len(w.frames) == maxJSONDepth {
			return false, errJSONSyntax
		}
		w.frames = append(w.frames, jsonFrame{object: c == '{', keysFrom: len(w.keys)})
		w.space()
		if w.i < len(w.b) && (c == '{' && w.b[w.i] == '}' || c == '[' && w.b[w.i] == ']') {
			w.i++
			w.pop()
			return false, nil
		}
		if c == '{' {
			return true, w.key()
		}
		return true, nil
	case '"':
		_, nul, err := w.str(false)
		if err != nil {
			return false, err
		}
		if nul {
			return false, &fieldError{w.path(), "the string holds a NUL character"}
		}
		return false, nil
	default:
		// A number, true, false or null; the decoder checks which.
		start := w.i
		for w.i < len(w.b) && !jsonDelimiter(w.b[w.i]) {
			w.i++
		}
		if w.i == start {
			return false, errJSONSyntax
		}
		return false, nil
	}
}

// key reads an object's key and its colon, refusing a key given twice or
// holding a NUL character.
func (w *jsonWalker) key() error {
	w.space()
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return errJSONSyntax
	}
	k, nul, err := w.str(true)
	if err != nil {
		return err
	}
	f := &w.frames[len(w.frames)-1]
	twice := false
	switch own := w.keys[f.keysFrom:]; {
	case f.seen != nil:
		_, twice = f.seen[string(k)]
		f.seen[string(k)] = struct{}{}
		w.keys[len(w.keys)-1] = k
	case len(own) < smallObject:
		for _, o := range own {
			if bytes.Equal(o, k) {
				twice = true
				break
			}
		}
		w.keys = append(w.keys, k)
	default:
		f.seen = make(map[string]struct{}, 2*smallObject)
		for _, o := range own {
			f.seen[string(o)] = struct{}{}
		}
		_, twice = f.seen[string(k)]
		f.seen[string(k)] = struct{}{}
		w.keys[len(w.keys)-1] = k
	}
	if nul {
		return &fieldError{w.path(), "a key holds a NUL character"}
	}
	if twice {
		return &fieldError{w.path(), "the key is given twice"}
	}
	w.space()
	if w.i >= len(w.b) || w.b[w.i] != ':' {
		return errJSONSyntax
	}
	w.i++
	return nil
}

// str reads the string at w.i, its opening quote, and reports whether it
// holds an escaped NUL. With decode it returns the string's text, which
// refers to the body unless an escape had to be decoded; else nil.
func (w *jsonWalker) str(decode bool) (text []byte, nul bool, err error) {
	start := w.i
	w.i++
	escaped := false
	for w.i < len(w.b) {
		switch c := w.b[w.i]; {
		case c == '"':
			w.i++
			if !decode {
				return nil, nul, nil
			}
			if !escaped {
				return w.b[start+1 : w.i-1], nul, nil
			}
			var s string
			if err := json.Unmarshal(w.b[start:w.i], &s); err != nil {
				return nil, false, errJSONSyntax
			}
			return []byte(s), nul, nil
		case c == '\\':
			escaped = true
			if bytes.HasPrefix(w.b[w.i+1:], []byte("u0000")) {
				nul = true
			}
			w.i += 2 // the backslash and the escaped byte; \uXXXX's digits follow as text
		case c < 0x20:
			return nil, false, errJSONSyntax
		default:
			w.i++
		}
	}
	return nil, false, errJSONSyntax
}

// pop closes the innermost container, forgetting its keys.
func (w *jsonWalker) pop() {
	w.keys = w.keys[:w.frames[len(w.frames)-1].keysFrom]
	w.frames = w.frames[:len(w.frames)-1]
}

func (w *jsonWalker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// jsonDelimiter reports whether c ends a number or a literal.
func jsonDelimiter(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', ']', '}', '[', '{', '"':
		return true
	}
	return false
}

// path is the field whose value or key is being read, as "a.b[2].c".
func (w *jsonWalker) path() string {
	var sb strings.Builder
	for n, f := range w.frames {
		if !f.object {
			sb.WriteString("[" + strconv.Itoa(f.index) + "]")
			continue
		}
		end := len(w.keys)
		if n+1 < len(w.frames) {
			end = w.frames[n+1].keysFrom
		}
		if end > f.keysFrom {
			if sb.Len() > 0 {
				sb.WriteByte('.')
			}
			sb.Write(w.keys[end-1])
		}
	}
	return sb.String()
}
