package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (slices.Contains(types, mt) || strings.HasSuffix(mt, "+json") && slices.Contains(types, "application/json")) {
		return true
	}
	Fail(c, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send %s", ct, strings.Join(types, " or ")), "Content-Type")
	return false
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
// to the decoder, which reports them with their offset.
func checkJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		path   string
		object bool
		keys   map[string]bool
		index  int
		key    string // the object's key awaiting its value
		hasKey bool
	}
	var stack []*frame
	// here is the path of the value the next token starts.
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
	// done records that a whole value was read in the current container.
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
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
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
			default: // ']'; '}' is handled with the keys above
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
