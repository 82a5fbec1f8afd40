package flag

import (
	"bytes"
	"encoding/json"
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
	Expected   evalExpected   `json:"expected"`
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
	return cases
}

func TestEvaluationVectorFile(t *testing.T) {
	if *update {
		src, err := Parse([]byte(evalVectorFlags))
		if err != nil {
			t.Fatal(err)
		}
		vf := evalVectorFile{Version: "v1", Flags: src.Flags, Cases: evalVectorCases(),
			Description: "Vigil evaluation vectors: evaluate each case's flag for its targetingKey and attributes " +
				"and expect variant, value, reason and errorType. For an unknown flag the SDK serves the caller's default " +
				"(value and variant are null/empty here). See docs/bucketing.md."}
		for i := range vf.Flags {
			vf.Flags[i].Version = int64(i + 1)
		}
		snap, err := NewSnapshot(int64(len(vf.Flags)), vf.Flags)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range vf.Cases {
			d := snap.Evaluate(c.Flag, Context{Key: c.Key, Attributes: c.Attributes})
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
	for _, c := range vf.Cases {
		d := snap.Evaluate(c.Flag, Context{Key: c.Key, Attributes: c.Attributes})
		got, _ := json.Marshal(d.Value)
		want, _ := json.Marshal(c.Expected.Value)
		if d.Variant != c.Expected.Variant || d.Reason != c.Expected.Reason || d.ErrorType != c.Expected.ErrorType || !bytes.Equal(got, want) {
			t.Errorf("%s: got %s %s %s %s, want %s %s %s %s", c.Name, d.Variant, d.Reason, d.ErrorType, got,
				c.Expected.Variant, c.Expected.Reason, c.Expected.ErrorType, want)
		}
		reasons[d.Reason] = true
	}
	for _, r := range []Reason{ReasonDisabled, ReasonTargetingMatch, ReasonSplit, ReasonDefault, ReasonError} {
		if !reasons[r] {
			t.Errorf("no case yields reason %s", r)
		}
	}
}
