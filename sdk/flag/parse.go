package flag

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"

	"gopkg.in/yaml.v3"
)

// ParseFile reads and validates a flags file in YAML or JSON.
func ParseFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("load flags %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("load flags %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a flags document, YAML or JSON, and validates it. Unknown
// fields are errors, so a typo never silently drops a setting; they and
// values of the wrong kind are reported with their line and column (a
// *PositionError).
//
// YAML is read with YAML 1.2 rules, so `off` and `on` are strings, as the
// variant names of most flags files are.
func Parse(data []byte) (File, error) { return parse(data, false) }

// ParseFileOrFlag is Parse that also takes a document of one flag (with a
// key and no flags list), as `vigil get flag KEY` prints it, and reads it as
// a file of that flag. Apply takes either; a flags file for the SDKs is
// always a file.
func ParseFileOrFlag(data []byte) (File, error) { return parse(data, true) }

func parse(data []byte, oneFlag bool) (File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return File{}, fmt.Errorf("parse flags: %w", err)
	}
	if len(root.Content) == 0 {
		return File{}, errors.New("parse flags: document is empty")
	}
	node := root.Content[0]
	if err := checkKeys(node, ""); err != nil {
		return File{}, fmt.Errorf("parse flags: %w", err)
	}
	var doc any
	if err := node.Decode(&doc); err != nil {
		return File{}, fmt.Errorf("parse flags: %w", err)
	}
	if doc == nil {
		return File{}, errors.New("parse flags: document is empty")
	}
	typ := reflect.TypeFor[File]()
	if m, ok := doc.(map[string]any); ok && oneFlag && m["key"] != nil && m["flags"] == nil {
		typ, doc = reflect.TypeFor[Flag](), map[string]any{"flags": []any{m}}
	}
	if err := checkNode(node, typ, ""); err != nil {
		return File{}, fmt.Errorf("parse flags: %w", err)
	}
	doc = toJSONCompatible(doc)
	if err := checkFileValues(doc); err != nil {
		return File{}, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return File{}, fmt.Errorf("parse flags: %w", err)
	}
	var f File
	if err := DecodeStrict(js, &f); err != nil {
		return File{}, fmt.Errorf("parse flags: %w", err)
	}
	if err := Validate(f.Flags); err != nil {
		return File{}, err
	}
	return f, nil
}

// DecodeStrict decodes one JSON value into v and rejects unknown fields and
// trailing data.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// toJSONCompatible turns what yaml.v3 decodes into values encoding/json can
// marshal: maps with non-string keys get string keys.
func toJSONCompatible(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = toJSONCompatible(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = toJSONCompatible(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = toJSONCompatible(e)
		}
		return t
	default:
		return v
	}
}

// Values are the operands of a clause. In a flags file they may be written as
// strings, numbers or booleans; they are kept as strings and interpreted by
// the operator.
type Values []string

// UnmarshalJSON accepts a list of strings, numbers and booleans.
func (v *Values) UnmarshalJSON(data []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("values must be a list: %w", err)
	}
	out := make(Values, 0, len(raw))
	for i, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		r = bytes.TrimSpace(r)
		switch {
		case bytes.Equal(r, []byte("true")), bytes.Equal(r, []byte("false")):
			out = append(out, string(r))
		default:
			var n json.Number
			if err := json.Unmarshal(r, &n); err != nil {
				return fmt.Errorf("values[%d]: want a string, number or boolean, got %s", i, r)
			}
			out = append(out, n.String())
		}
	}
	*v = out
	return nil
}
