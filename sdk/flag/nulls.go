package flag

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// nullMessage is what a null where a value is required is told.
const nullMessage = "null is not a value here; give one, or leave out a field that may be left out"

// CheckNulls refuses null in data, one flag written as JSON, wherever a value
// is required; key names the flag in the errors, which are *FieldError values
// joined with errors.Join. encoding/json would take such a null silently as
// the zero value: `"enabled": null` as false, `"percent": null` as 0, a null
// unit or clause value as "". Null stays allowed where it means what leaving
// the field out means, and as a variant's value, which may be any JSON value
// (docs/bucketing.md). A document that is not JSON is left to the decoder.
func CheckNulls(key string, data []byte) error {
	if !bytes.Contains(data, []byte("null")) {
		return nil // the usual body, without decoding it twice
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		return nil
	}
	var errs []error
	nullsIn(doc, reflect.TypeFor[Flag](), "", func(path string) {
		errs = append(errs, &FieldError{Flag: key, Field: path, Message: nullMessage})
	})
	return errors.Join(errs...)
}

// checkFileValues refuses, in a flags file decoded into doc, null where a
// value is required, as CheckNulls does, and a NUL character in any key or
// string, which YAML can write as an escape ("\0", "\x00", "\u0000"). It
// names each flag as Validate does; a null flag is left to Validate, which
// finds it has no key.
func checkFileValues(doc any) error {
	m, _ := doc.(map[string]any)
	list, _ := m["flags"].([]any)
	var errs []error
	for i, f := range list {
		name := fmt.Sprintf("#%d", i)
		if fm, ok := f.(map[string]any); ok {
			if k, ok := fm["key"].(string); ok && k != "" {
				name = k
			}
		}
		nullsIn(f, reflect.TypeFor[Flag](), "", func(path string) {
			errs = append(errs, &FieldError{Flag: name, Field: path, Message: nullMessage})
		})
		nulsIn(f, "", func(path, msg string) {
			errs = append(errs, &FieldError{Flag: name, Field: path, Message: msg})
		})
	}
	return errors.Join(errs...)
}

// nulsIn calls found with the path of every key and string in v, a
// document decoded into any, that holds a NUL character, which names and
// logs would carry on.
func nulsIn(v any, path string, found func(path, msg string)) {
	switch t := v.(type) {
	case string:
		if strings.ContainsRune(t, 0) {
			found(path, "the string holds a NUL character")
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(t)) {
			p := join(path, k)
			if strings.ContainsRune(k, 0) {
				found(p, "a key holds a NUL character")
			}
			nulsIn(t[k], p, found)
		}
	case []any:
		for i, e := range t {
			nulsIn(e, path+"["+strconv.Itoa(i)+"]", found)
		}
	}
}

// nullsIn calls found with the path of every null in v, a document decoded
// into any, where a value of type t needs a value, in the order of the
// document's fields sorted by name.
func nullsIn(v any, t reflect.Type, path string, found func(path string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessage {
		return // any JSON value, null included
	}
	switch t.Kind() {
	case reflect.Struct:
		m, _ := v.(map[string]any)
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			// As in encoding/json, a name matches its field in any case;
			// unknown fields are the decoder's to refuse.
			f, ok := fields[strings.ToLower(k)]
			if !ok {
				continue
			}
			p := join(path, k)
			if m[k] == nil {
				if !nullable(f) {
					found(p)
				}
				continue
			}
			nullsIn(m[k], f.typ, p, found)
		}
	case reflect.Map:
		m, _ := v.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := join(path, k)
			if m[k] == nil {
				if !nullable(jsonField{typ: t.Elem()}) {
					found(p)
				}
				continue
			}
			nullsIn(m[k], t.Elem(), p, found)
		}
	case reflect.Slice, reflect.Array:
		l, _ := v.([]any)
		for i, e := range l {
			p := path + "[" + strconv.Itoa(i) + "]"
			if e == nil {
				if !nullable(jsonField{typ: t.Elem()}) {
					found(p)
				}
				continue
			}
			nullsIn(e, t.Elem(), p, found)
		}
	}
}

// nullable reports whether null may stand for a value of field f: where
// the field may be left out (omitempty), and where Go itself writes null,
// for a nil list, map or pointer, so that what the controller serves can be
// written back. A variant's value is a json.RawMessage, a list of bytes, so
// it may be null too.
func nullable(f jsonField) bool {
	switch f.typ.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		return true
	}
	return f.omitempty
}

var rawMessage = reflect.TypeFor[json.RawMessage]()
