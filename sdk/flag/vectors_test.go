package flag

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

var evalVectorsPath = filepath.Join("..", "..", "testdata", "evaluation-v1.json")

// evalVectorFile is the shape of testdata/evaluation-v1.json: flags as
// delivered on the wire, and contexts with the expected outcome.
type evalVectorFile struct {
	Version     string       `json:"version"`
	Description string       `json:"description"`
	Flags       []Flag       `json:"flags"`
	Cases       []evalVector `json:"cases"`
}

type evalVector struct {
	Name       string         `json:"name"`
	Flag       string         `json:"flag"`
	Key        string         `json:"targetingKey"`
	Attributes map[string]any `json:"attributes,omitempty"`
	// Type is the type the caller asks for (one of evalTypes), and Default
	// the default it passes, which is served when the evaluation has no
	// variant or the variant's value is not of Type. A case without a type
	// asks for any JSON value with a null default, as the first version of
	// the file did.
	Type     string          `json:"type,omitempty"`
	Default  json.RawMessage `json:"default,omitempty"`
	Expected evalExpected    `json:"expected"`
}

// evalTypes are the types a case may ask for, each as the typed getter of
// the SDKs (Go's Bool, String, Float, Int and JSON) checks it.
var evalTypes = map[string]func(v any) bool{
	"boolean": func(v any) bool { _, ok := v.(bool); return ok },
	"string":  func(v any) bool { _, ok := v.(string); return ok },
	"number":  func(v any) bool { _, ok := v.(float64); return ok },
	// A whole number in the int64 range: 2^63 is a float64 but not an
	// int64, while -2^63 is both.
	"integer": func(v any) bool {
		f, ok := v.(float64)
		return ok && f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63
	},
	"object": func(any) bool { return true },
}

// typed turns an evaluation into what a caller asking for c's type gets:
// the default when there is no variant, the default with type_mismatch
// when the variant's value is not of the type (even over another error
// that kept a variant, such as targeting_key_missing serving the control),
// and the evaluation otherwise.
func typed(t *testing.T, c evalVector, d Detail) Detail {
	t.Helper()
	typ, def := c.Type, any(nil)
	if typ == "" {
		typ = "object"
	}
	check, ok := evalTypes[typ]
	if !ok {
		t.Fatalf("%s: unknown type %q", c.Name, c.Type)
	}
	if c.Type == "" && c.Default != nil {
		t.Fatalf("%s: a default without a type", c.Name)
	}
	if c.Type != "" {
		if c.Default == nil {
			t.Fatalf("%s: type %s without a default", c.Name, c.Type)
		}
		if err := json.Unmarshal(c.Default, &def); err != nil {
			t.Fatalf("%s: default: %v", c.Name, err)
		}
		if !check(def) {
			t.Fatalf("%s: default %s is not of type %s", c.Name, c.Default, c.Type)
		}
	}
	switch {
	case d.Variant == "":
		d.Value = def
	case !check(d.Value):
		d.Value, d.Variant, d.Reason, d.ErrorType = def, "", ReasonError, ErrorTypeMismatch
	}
	return d
}

type evalExpected struct {
	Value     any       `json:"value"`
	Variant   string    `json:"variant"`
	Reason    Reason    `json:"reason"`
	ErrorType ErrorType `json:"errorType,omitempty"`
}

// evalVectorFlags and evalVectorCases are the source of the vector file;
// expectations are filled in from the evaluation when -update is given and
// reviewed in the diff.
const evalVectorFlags = `
flags:
  - key: ops
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    rules:
      - {variant: on, when: [{attribute: in, op: in, values: [a, b, 10, true]}]}
      - {variant: on, when: [{attribute: not_in, op: not_in, values: [a, b]}]}
      - {variant: on, when: [{attribute: starts_with, op: starts_with, values: [pre]}]}
      - {variant: on, when: [{attribute: ends_with, op: ends_with, values: ["@example.com"]}]}
      - {variant: on, when: [{attribute: contains, op: contains, values: [mid]}]}
      - {variant: on, when: [{attribute: matches, op: matches, values: ['^user-[0-9]+$']}]}
      - {variant: on, when: [{attribute: lt, op: lt, values: [10]}]}
      - {variant: on, when: [{attribute: lte, op: lte, values: [10]}]}
      - {variant: on, when: [{attribute: gt, op: gt, values: [10]}]}
      - {variant: on, when: [{attribute: gte, op: gte, values: [10.5]}]}
      - {variant: on, when: [{attribute: semver_lt, op: semver_lt, values: [2.0.0]}]}
      - {variant: on, when: [{attribute: semver_gte, op: semver_gte, values: [2.0.0]}]}
      - {variant: on, when: [{attribute: plan, op: in, values: [beta]}, {attribute: country, op: in, values: [NL]}]}
  - key: new-checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets: [{variant: on, units: [qa-1]}, {variant: off, units: [qa-2, qa-1]}]
    rules: [{variant: on, when: [{attribute: plan, op: in, values: [beta]}]}]
    rollout: {percent: 37.5}
  - key: disabled
    variants: {a: "A", b: "B"}
    control: a
    treatment: b
    enabled: false
    targets: [{variant: b, units: [qa-1]}]
    rollout: {percent: 100}
  - key: no-rollout
    variants: {a: 1, b: 2}
    control: a
    enabled: true
    rules: [{variant: b, when: [{attribute: tier, op: in, values: [gold]}]}]
  - key: json-values
    variants: {small: {limit: 10, tags: [x, y]}, big: {limit: 1000, tags: []}, none: null}
    control: none
    treatment: big
    enabled: true
    salt: shared-salt
    rollout: {percent: 50}
  - key: salted-twin
    variants: {c: "c", t: "t"}
    control: c
    treatment: t
    enabled: true
    salt: shared-salt
    rollout: {percent: 50}
  - key: zero
    variants: {c: "c", t: "t"}
    control: c
    treatment: t
    enabled: true
    rollout: {percent: 0}
  - key: full
    variants: {c: "c", t: "t"}
    control: c
    treatment: t
    enabled: true
    rollout: {percent: 100}
  - key: fine
    variants: {c: "c", t: "t"}
    control: c
    treatment: t
    enabled: true
    rollout: {percent: 0.001}
  - key: numbers
    variants: {whole: 7, frac: 2.5, top: 9223372036854775807, bottom: -9223372036854775808, huge: 1e300, text: "7", bool: true}
    control: whole
    enabled: true
    rules:
      - {variant: frac, when: [{attribute: pick, op: in, values: [frac]}]}
      - {variant: top, when: [{attribute: pick, op: in, values: [top]}]}
      - {variant: bottom, when: [{attribute: pick, op: in, values: [bottom]}]}
      - {variant: huge, when: [{attribute: pick, op: in, values: [huge]}]}
      - {variant: text, when: [{attribute: pick, op: in, values: [text]}]}
      - {variant: bool, when: [{attribute: pick, op: in, values: [bool]}]}
`

func evalVectorCases() []evalVector {
	a := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cases := []evalVector{
		{Name: "in string", Flag: "ops", Key: "u", Attributes: a("in", "b")},
		{Name: "in number as string value", Flag: "ops", Key: "u", Attributes: a("in", 10)},
		{Name: "in boolean", Flag: "ops", Key: "u", Attributes: a("in", true)},
		{Name: "in no match", Flag: "ops", Key: "u", Attributes: a("in", "c")},
		{Name: "in is case sensitive", Flag: "ops", Key: "u", Attributes: a("in", "A")},
		{Name: "not_in match", Flag: "ops", Key: "u", Attributes: a("not_in", "c")},
		{Name: "not_in no match", Flag: "ops", Key: "u", Attributes: a("not_in", "a")},
		{Name: "missing attribute never matches, not even not_in", Flag: "ops", Key: "u", Attributes: a("other", "x")},
		{Name: "null attribute never matches", Flag: "ops", Key: "u", Attributes: a("not_in", nil)},
		{Name: "starts_with", Flag: "ops", Key: "u", Attributes: a("starts_with", "prefix")},
		{Name: "starts_with no", Flag: "ops", Key: "u", Attributes: a("starts_with", "xpre")},
		{Name: "ends_with", Flag: "ops", Key: "u", Attributes: a("ends_with", "me@example.com")},
		{Name: "ends_with no", Flag: "ops", Key: "u", Attributes: a("ends_with", "me@example.org")},
		{Name: "contains", Flag: "ops", Key: "u", Attributes: a("contains", "amidst")},
		{Name: "contains no", Flag: "ops", Key: "u", Attributes: a("contains", "mi-d")},
		{Name: "matches", Flag: "ops", Key: "u", Attributes: a("matches", "user-42")},
		{Name: "matches no", Flag: "ops", Key: "u", Attributes: a("matches", "user-42x")},
		{Name: "lt", Flag: "ops", Key: "u", Attributes: a("lt", 9.99)},
		{Name: "lt equal is no", Flag: "ops", Key: "u", Attributes: a("lt", 10)},
		{Name: "lt numeric string", Flag: "ops", Key: "u", Attributes: a("lt", "9")},
		{Name: "lt text is no", Flag: "ops", Key: "u", Attributes: a("lt", "nine")},
		{Name: "lte equal", Flag: "ops", Key: "u", Attributes: a("lte", 10)},
		{Name: "lte above", Flag: "ops", Key: "u", Attributes: a("lte", 10.01)},
		{Name: "gt", Flag: "ops", Key: "u", Attributes: a("gt", 11)},
		{Name: "gt equal is no", Flag: "ops", Key: "u", Attributes: a("gt", 10)},
		{Name: "gte equal", Flag: "ops", Key: "u", Attributes: a("gte", 10.5)},
		{Name: "gte below", Flag: "ops", Key: "u", Attributes: a("gte", 10.49)},
		{Name: "gt boolean is no", Flag: "ops", Key: "u", Attributes: a("gt", true)},
		{Name: "semver_lt", Flag: "ops", Key: "u", Attributes: a("semver_lt", "1.10.3")},
		{Name: "semver_lt prerelease", Flag: "ops", Key: "u", Attributes: a("semver_lt", "2.0.0-rc.1")},
		{Name: "semver_lt equal is no", Flag: "ops", Key: "u", Attributes: a("semver_lt", "2.0.0")},
		{Name: "semver_gte equal", Flag: "ops", Key: "u", Attributes: a("semver_gte", "2.0.0")},
		{Name: "semver_gte numeric not lexical", Flag: "ops", Key: "u", Attributes: a("semver_gte", "10.0.0")},
		{Name: "semver_gte below", Flag: "ops", Key: "u", Attributes: a("semver_gte", "1.99.99")},
		{Name: "semver not a version", Flag: "ops", Key: "u", Attributes: a("semver_gte", "latest")},
		{Name: "all clauses must match", Flag: "ops", Key: "u", Attributes: a("plan", "beta", "country", "NL")},
		{Name: "one clause fails", Flag: "ops", Key: "u", Attributes: a("plan", "beta", "country", "DE")},
		{Name: "no rule: no rollout default", Flag: "ops", Key: "u"},
		{Name: "target first", Flag: "new-checkout", Key: "qa-1", Attributes: a("plan", "free")},
		{Name: "target before rule", Flag: "new-checkout", Key: "qa-2", Attributes: a("plan", "beta")},
		{Name: "rule before rollout", Flag: "new-checkout", Key: "user-1", Attributes: a("plan", "beta")},
		{Name: "rule without a unit key", Flag: "new-checkout", Attributes: a("plan", "beta")},
		{Name: "rollout without a unit key", Flag: "new-checkout"},
		{Name: "disabled beats targets", Flag: "disabled", Key: "qa-1"},
		{Name: "disabled without a unit key", Flag: "disabled"},
		{Name: "no rollout, no match", Flag: "no-rollout", Key: "u"},
		{Name: "no rollout, rule", Flag: "no-rollout", Key: "u", Attributes: a("tier", "gold")},
		{Name: "no rollout needs no unit key", Flag: "no-rollout"},
		{Name: "unknown flag", Flag: "missing", Key: "u"},
		{Name: "percent 0", Flag: "zero", Key: "user-1"},
		{Name: "percent 100", Flag: "full", Key: "user-1"},
	}
	units := []string{"user-1", "user-2", "user-3", "user-42", "ünïcødé-🙂", "e\u0301", "é", "👨‍👩‍👧‍👦", "a/b", " ", "0"}
	for _, u := range units {
		cases = append(cases,
			evalVector{Name: "split " + u, Flag: "new-checkout", Key: u},
			evalVector{Name: "json split " + u, Flag: "json-values", Key: u},
			evalVector{Name: "shared salt " + u, Flag: "salted-twin", Key: u},
			evalVector{Name: "0.001% " + u, Flag: "fine", Key: u},
		)
	}
	for i := 0; i < 60; i++ {
		u := "unit-" + itoa(i*7919)
		cases = append(cases, evalVector{Name: "split " + u, Flag: "new-checkout", Key: u})
	}
	return append(cases, typedVectorCases()...)
}

// typedVectorCases ask for a type: the variant when its value has it, the
// default with type_mismatch when not, the default when there is no
// variant. Defaults differ from every variant so that serving one shows.
func typedVectorCases() []evalVector {
	const (
		defBool   = `true`
		defString = `"fallback"`
		defNumber = `0.5`
		defInt    = `3`
		defObject = `{"fallback": true}`
	)
	typed := func(name, f, key, typ, def string, attrs ...any) evalVector {
		c := evalVector{Name: name, Flag: f, Key: key, Type: typ, Default: json.RawMessage(def)}
		if len(attrs) > 0 {
			c.Attributes = map[string]any{attrs[0].(string): attrs[1]}
		}
		return c
	}
	return []evalVector{
		typed("boolean: target", "new-checkout", "qa-1", "boolean", `false`),
		typed("boolean: split", "new-checkout", "user-1", "boolean", defBool),
		typed("boolean: no unit key serves the control, not the default", "new-checkout", "", "boolean", defBool),
		typed("string: type_mismatch wins over targeting_key_missing", "new-checkout", "", "string", defString),
		typed("string: boolean variant is a type_mismatch", "new-checkout", "qa-1", "string", defString),
		typed("boolean: unknown flag serves the default", "missing", "u", "boolean", defBool),
		typed("string: unknown flag serves the default", "missing", "u", "string", defString),
		typed("number: unknown flag serves the default", "missing", "u", "number", defNumber),
		typed("integer: unknown flag serves the default", "missing", "u", "integer", defInt),
		typed("object: unknown flag serves the default", "missing", "u", "object", defObject),
		typed("string: disabled serves the control", "disabled", "qa-1", "string", defString),
		typed("boolean: string variant is a type_mismatch", "disabled", "qa-1", "boolean", defBool),
		typed("number: string variant is a type_mismatch", "disabled", "qa-1", "number", defNumber),
		typed("integer: string variant is a type_mismatch", "disabled", "qa-1", "integer", defInt),
		typed("object: any JSON value, a string too", "disabled", "qa-1", "object", defObject),
		typed("number: default variant", "no-rollout", "u", "number", defNumber),
		typed("number: rule variant", "no-rollout", "u", "number", defNumber, "tier", "gold"),
		typed("integer: whole number", "no-rollout", "u", "integer", defInt, "tier", "gold"),
		typed("string: number variant is a type_mismatch", "no-rollout", "u", "string", defString),
		typed("boolean: number variant is a type_mismatch", "no-rollout", "u", "boolean", defBool),
		typed("object: any JSON value, a number too", "no-rollout", "u", "object", defObject),
		typed("object: any JSON value, a boolean too", "new-checkout", "qa-1", "object", defObject),
		typed("object: an object", "json-values", "user-2", "object", defObject),
		typed("object: a null variant serves null, not the default", "json-values", "user-1", "object", defObject),
		typed("boolean: null variant is a type_mismatch", "json-values", "user-1", "boolean", defBool),
		typed("number: object variant is a type_mismatch", "json-values", "user-2", "number", defNumber),
		typed("string: object variant is a type_mismatch", "json-values", "user-2", "string", defString),
		typed("integer: 7", "numbers", "u", "integer", defInt),
		typed("integer: 7 without a unit key, no rollout", "numbers", "", "integer", defInt),
		typed("integer: 2.5 is a type_mismatch", "numbers", "u", "integer", defInt, "pick", "frac"),
		typed("number: 2.5", "numbers", "u", "number", defNumber, "pick", "frac"),
		typed("integer: 2^63 is out of range", "numbers", "u", "integer", defInt, "pick", "top"),
		typed("number: 2^63", "numbers", "u", "number", defNumber, "pick", "top"),
		typed("integer: -2^63 is in range", "numbers", "u", "integer", defInt, "pick", "bottom"),
		typed("integer: 1e300 is out of range", "numbers", "u", "integer", defInt, "pick", "huge"),
		typed("number: 1e300", "numbers", "u", "number", defNumber, "pick", "huge"),
		typed("integer: the string \"7\" is a type_mismatch", "numbers", "u", "integer", defInt, "pick", "text"),
		typed("string: \"7\"", "numbers", "u", "string", defString, "pick", "text"),
		typed("number: boolean variant is a type_mismatch", "numbers", "u", "number", defNumber, "pick", "bool"),
		typed("boolean: true", "numbers", "u", "boolean", `false`, "pick", "bool"),
	}
}

func TestEvaluationVectorFile(t *testing.T) {
	if *update {
		src, err := Parse([]byte(evalVectorFlags))
		if err != nil {
			t.Fatal(err)
		}
		vf := evalVectorFile{Version: "v1", Flags: src.Flags, Cases: evalVectorCases(),
			Description: "Vigil evaluation vectors: evaluate each case's flag for its targetingKey and attributes " +
				"and expect variant, value, reason and errorType. A case with a type (boolean, string, number, integer, object) " +
				"asks for that type with the given default, which is served when there is no variant, and with type_mismatch " +
				"when the variant's value is not of the type. A case without a type asks for any JSON value with a null " +
				"default. See docs/bucketing.md."}
		for i := range vf.Flags {
			vf.Flags[i].Version = int64(i + 1)
		}
		snap, err := NewSnapshot(int64(len(vf.Flags)), vf.Flags)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range vf.Cases {
			d := typed(t, c, snap.Evaluate(c.Flag, Context{Key: c.Key, Attributes: c.Attributes}))
			vf.Cases[i].Expected = evalExpected{Value: d.Value, Variant: d.Variant, Reason: d.Reason, ErrorType: d.ErrorType}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", " ")
		if err := enc.Encode(vf); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(evalVectorsPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(evalVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vf evalVectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(1, vf.Flags)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[Reason]bool{}
	errorTypes := map[ErrorType]bool{}
	types := map[string]bool{}
	for _, c := range vf.Cases {
		d := typed(t, c, snap.Evaluate(c.Flag, Context{Key: c.Key, Attributes: c.Attributes}))
		got, _ := json.Marshal(d.Value)
		want, _ := json.Marshal(c.Expected.Value)
		if d.Variant != c.Expected.Variant || d.Reason != c.Expected.Reason || d.ErrorType != c.Expected.ErrorType || !bytes.Equal(got, want) {
			t.Errorf("%s: got %s %s %s %s, want %s %s %s %s", c.Name, d.Variant, d.Reason, d.ErrorType, got,
				c.Expected.Variant, c.Expected.Reason, c.Expected.ErrorType, want)
		}
		reasons[d.Reason] = true
		errorTypes[d.ErrorType] = true
		types[c.Type] = true
	}
	for _, r := range []Reason{ReasonDisabled, ReasonTargetingMatch, ReasonSplit, ReasonDefault, ReasonError} {
		if !reasons[r] {
			t.Errorf("no case yields reason %s", r)
		}
	}
	// provider_not_ready and general cannot come from a snapshot in the Go
	// reference (docs/bucketing.md says why); every other error type must.
	for _, e := range []ErrorType{ErrorFlagNotFound, ErrorTargetingKeyMissing, ErrorTypeMismatch} {
		if !errorTypes[e] {
			t.Errorf("no case yields error type %s", e)
		}
	}
	for typ := range evalTypes {
		if !types[typ] {
			t.Errorf("no case asks for type %s", typ)
		}
	}
	if !types[""] {
		t.Error("no case without a type: the first version's cases must stay valid")
	}
}
