package flag

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// PositionError is a mistake in a flags document at a known place: an
// unknown field or a value of the wrong kind.
type PositionError struct {
	Line, Column int
	// Path locates the field in the document, such as
	// "flags[0].rollout.percent".
	Path string
	Msg  string
}

// Error reads "line 7, column 5: flags[0].enabeld: unknown field".
func (e *PositionError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("line %d, column %d: %s: %s", e.Line, e.Column, e.Path, e.Msg)
}

// Field is the field the error is about, within its flag as Validate names
// fields: Path without its leading "flags[N].", such as "enabeld" or
// "variants.on".
func (e *PositionError) Field() string {
	if rest, ok := strings.CutPrefix(e.Path, "flags["); ok {
		if _, field, ok := strings.Cut(rest, "]."); ok {
			return field
		}
	}
	return e.Path
}

// checkKeys refuses a key given twice in one mapping of n, with the line
// and column of the second: yaml.v3 would refuse it too, but without
// saying in which field.
func checkKeys(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.MappingNode:
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := join(path, k.Value)
			if k.Kind == yaml.ScalarNode && k.Value != "<<" && seen[k.Value] {
				return &PositionError{Line: k.Line, Column: k.Column, Path: p, Msg: "the key is given twice"}
			}
			seen[k.Value] = true
			if err := checkKeys(n.Content[i+1], p); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if err := checkKeys(e, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkNode compares a YAML node with the Go type it will be decoded into,
// through JSON and its field names, and returns the first field the type does
// not have or value of the wrong kind, with its line and column. The JSON
// decoder finds the same mistakes, but without saying where they are.
func checkNode(n *yaml.Node, t reflect.Type, path string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	// A type that decodes itself decides what it accepts.
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	fail := func(format string, args ...any) error {
		return &PositionError{Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fail("want a mapping, got %s", describe(n))
		}
		fields := jsonFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue
			}
			// As in encoding/json, a name matches its field in any case.
			ft, ok := fields[strings.ToLower(k.Value)]
			if !ok {
				return &PositionError{Line: k.Line, Column: k.Column, Path: join(path, k.Value), Msg: "unknown field"}
			}
			if err := checkNode(v, ft.typ, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fail("want a mapping, got %s", describe(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return fail("want a list, got %s", describe(n))
		}
		for i, e := range n.Content {
			if err := checkNode(e, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case reflect.String:
		// A date reads as a timestamp, which JSON carries as a string.
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!timestamp") {
			return fail("want a string, got %s (quote it)", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return fail("want true or false, got %s", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return fail("want a whole number, got %s", describe(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			return fail("want a number, got %s", describe(n))
		}
	}
	return nil
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	typ       reflect.Type
	omitempty bool
}

// jsonFields maps the JSON names of t's fields, embedded ones included and
// in lower case, to their types and whether they may be left out.
func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[strings.ToLower(name)] = jsonField{typ: f.Type, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty")}
	}
	return out
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
