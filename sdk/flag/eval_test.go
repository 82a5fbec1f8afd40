package flag

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func rolloutFlag(key string, percent float64) Flag {
	return Flag{
		Key: key, Enabled: true, Control: "off", Treatment: "on",
		Variants: map[string]json.RawMessage{"off": json.RawMessage(`false`), "on": json.RawMessage(`true`)},
		Rollout:  &Rollout{Percent: percent},
		Version:  7,
	}
}

// issueExample is the flags file from the foundation issue, verbatim.
const issueExample = `
flags:
  - key: new-checkout
    description: New checkout flow
    variants: {off: false, on: true}   # any JSON values
    control: off          # served when disabled, not targeted, outside the rollout, or rolled back
    treatment: on         # the variant a rollout ramps up
    enabled: true
    salt: new-checkout    # optional, defaults to the key
    targets:              # explicit units, checked first
      - {variant: on, units: [qa-1, qa-2]}
    rules:                # attribute rules in order, first match wins
      - variant: on
        when: [{attribute: plan, op: in, values: [beta]}]
    rollout:
      percent: 5          # treatment share of the remaining units, 0..100, up to 3 decimals
`

func TestParseIssueExample(t *testing.T) {
	f, err := Parse([]byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Flags) != 1 {
		t.Fatalf("got %d flags", len(f.Flags))
	}
	g := f.Flags[0]
	if g.Key != "new-checkout" || g.Control != "off" || g.Treatment != "on" || !g.Enabled ||
		g.Rollout.Percent != 5 || string(g.Variants["on"]) != "true" || string(g.Variants["off"]) != "false" ||
		g.Rules[0].When[0].Values[0] != "beta" || g.Targets[0].Units[1] != "qa-2" {
		t.Fatalf("parsed %+v", g)
	}
}

func TestParsePlan(t *testing.T) {
	f, err := Parse([]byte(`
flags:
  - key: k
    variants: {off: false, on: true}
    control: off
    treatment: on
    rollout:
      percent: 0
      plan:
        steps: [1, 5, 10, 25, 50, 100]
        interval: 30s
        minStepDuration: 5m
        minRequests: 500
        maxStepDuration: 1h
        onTimeout: pause
        onProviderError: {after: 5, action: pause}
        alpha: 0.01
        metrics:
          - {name: error-rate, tolerance: 1.2, max: 0.05}
          - {name: latency, tolerance: 1.2, maxP99: 1.5s}
          - {name: checkout-conversion, query: 'sum(x)', direction: lower-is-worse, tolerance: 0.95}
        gates: [50]
`))
	if err != nil {
		t.Fatal(err)
	}
	// The SDK carries the plan as written, for the controller to read.
	var p map[string]any
	if err := json.Unmarshal(f.Flags[0].Rollout.Plan, &p); err != nil {
		t.Fatalf("plan %s: %v", f.Flags[0].Rollout.Plan, err)
	}
	if p["interval"] != "30s" || p["minRequests"] != 500.0 || len(p["metrics"].([]any)) != 3 || p["gates"].([]any)[0] != 50.0 {
		t.Fatalf("plan %s", f.Flags[0].Rollout.Plan)
	}
}

func TestEvaluationOrder(t *testing.T) {
	f, err := Parse([]byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	base := f.Flags[0]
	base.Version = 3
	disabled := base
	disabled.Enabled = false
	noRollout := base
	noRollout.Rollout = nil
	full := base
	full.Rollout = &Rollout{Percent: 100}

	tests := []struct {
		name    string
		flag    Flag
		key     string
		ctx     Context
		variant string
		reason  Reason
		errType ErrorType
	}{
		{"disabled beats a target", disabled, "new-checkout", Context{Key: "qa-1"}, "off", ReasonDisabled, ""},
		{"target", base, "new-checkout", Context{Key: "qa-2"}, "on", ReasonTargetingMatch, ""},
		{"rule", base, "new-checkout", Context{Key: "u", Attributes: map[string]any{"plan": "beta"}}, "on", ReasonTargetingMatch, ""},
		{"rule does not match other value", full, "new-checkout", Context{Key: "u", Attributes: map[string]any{"plan": "free"}}, "on", ReasonSplit, ""},
		{"split control", base, "new-checkout", Context{Key: "user-1"}, "off", ReasonSplit, ""}, // bucket 39756 >= 5000
		{"split treatment", full, "new-checkout", Context{Key: "user-1"}, "on", ReasonSplit, ""},
		{"no rollout", noRollout, "new-checkout", Context{Key: "user-1"}, "off", ReasonDefault, ""},
		{"no unit key under a rollout", base, "new-checkout", Context{}, "off", ReasonError, ErrorTargetingKeyMissing},
		{"no unit key, rule still matches", base, "new-checkout", Context{Attributes: map[string]any{"plan": "beta"}}, "on", ReasonTargetingMatch, ""},
		{"no unit key, no rollout", noRollout, "new-checkout", Context{}, "off", ReasonDefault, ""},
		{"unknown flag", base, "nope", Context{Key: "u"}, "", ReasonError, ErrorFlagNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSnapshot(1, []Flag{tc.flag})
			if err != nil {
				t.Fatal(err)
			}
			d := s.Evaluate(tc.key, tc.ctx)
			if d.Variant != tc.variant || d.Reason != tc.reason || d.ErrorType != tc.errType {
				t.Fatalf("got variant %q reason %q error %q, want %q %q %q", d.Variant, d.Reason, d.ErrorType, tc.variant, tc.reason, tc.errType)
			}
			if tc.errType != ErrorFlagNotFound && d.Version != 3 {
				t.Fatalf("version %d, want 3", d.Version)
			}
			if tc.variant == "on" && d.Value != true || tc.variant == "off" && d.Value != false {
				t.Fatalf("value %v for variant %s", d.Value, d.Variant)
			}
			if (*Snapshot)(nil).Lookup(tc.key) != nil {
				t.Fatal("a nil snapshot has a flag")
			}
			// The compiled flag a snapshot hands out answers the same.
			c := s.Lookup(tc.key)
			if (c == nil) != (tc.errType == ErrorFlagNotFound) {
				t.Fatalf("Lookup(%q) = %v", tc.key, c)
			}
			if c != nil {
				var cd Detail
				c.EvaluateTo(tc.ctx, &cd)
				if cd != d {
					t.Fatalf("Compiled.EvaluateTo = %+v, Snapshot.Evaluate = %+v", cd, d)
				}
			}
		})
	}
}

func TestOperators(t *testing.T) {
	tests := []struct {
		op     Op
		values []string
		attr   any
		want   bool
	}{
		{OpIn, []string{"a", "b"}, "b", true},
		{OpIn, []string{"a", "b"}, "c", false},
		{OpIn, []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}, 10, true}, // set path, number attribute
		{OpIn, []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}, "11", false},
		{OpIn, []string{"true"}, true, true},
		{OpNotIn, []string{"a", "b"}, "c", true},
		{OpNotIn, []string{"a", "b"}, "a", false},
		{OpStartsWith, []string{"x", "ab"}, "abc", true},
		{OpStartsWith, []string{"bc"}, "abc", false},
		{OpEndsWith, []string{"bc"}, "abc", true},
		{OpEndsWith, []string{"ab"}, "abc", false},
		{OpContains, []string{"b"}, "abc", true},
		{OpContains, []string{"z"}, "abc", false},
		{OpMatches, []string{`^user-\d+$`}, "user-42", true},
		{OpMatches, []string{`^user-\d+$`}, "user-x", false},
		{OpLT, []string{"10"}, 9.5, true},
		{OpLT, []string{"10"}, 10, false},
		{OpLTE, []string{"10"}, int64(10), true},
		{OpLTE, []string{"10"}, "10.5", false},
		{OpGT, []string{"10"}, uint8(11), true},
		{OpGT, []string{"10"}, 10, false},
		{OpGTE, []string{"10"}, float32(10), true},
		{OpGTE, []string{"10"}, json.Number("9"), false},
		{OpGTE, []string{"10"}, "not a number", false},
		{OpGT, []string{"1"}, true, false},
		{OpSemverLT, []string{"2.0.0"}, "1.9.9", true},
		{OpSemverLT, []string{"2.0.0"}, "2.0.0", false},
		{OpSemverLT, []string{"2.0.0"}, "2.0.0-rc.1", true},
		{OpSemverGTE, []string{"2.0.0"}, "2.0.0", true},
		{OpSemverGTE, []string{"2.0.0"}, "1.10.0", false},
		{OpSemverGTE, []string{"2.0.0"}, "banana", false},
		{OpSemverGTE, []string{"2.0.0"}, 3, false},
	}
	for _, tc := range tests {
		f := rolloutFlag("k", 0)
		f.Rules = []Rule{{Variant: "on", When: []Clause{{Attribute: "a", Op: tc.op, Values: tc.values}}}}
		s, err := NewSnapshot(1, []Flag{f})
		if err != nil {
			t.Fatalf("%s %v: %v", tc.op, tc.values, err)
		}
		got := s.Evaluate("k", Context{Key: "u", Attributes: map[string]any{"a": tc.attr}}).Reason == ReasonTargetingMatch
		if got != tc.want {
			t.Errorf("%v %s %v = %v, want %v", tc.attr, tc.op, tc.values, got, tc.want)
		}
		// A clause on a missing attribute never matches, not even not_in.
		if s.Evaluate("k", Context{Key: "u"}).Reason == ReasonTargetingMatch {
			t.Errorf("%s matched a missing attribute", tc.op)
		}
	}
}

func TestRulesFirstMatchWinsAndAllClauses(t *testing.T) {
	f := rolloutFlag("k", 0)
	f.Variants["blue"] = json.RawMessage(`"blue"`)
	f.Rules = []Rule{
		{Variant: "blue", When: []Clause{{Attribute: "plan", Op: OpIn, Values: Values{"beta"}}, {Attribute: "country", Op: OpIn, Values: Values{"NL"}}}},
		{Variant: "on", When: []Clause{{Attribute: "plan", Op: OpIn, Values: Values{"beta"}}}},
	}
	s, err := NewSnapshot(1, []Flag{f})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Evaluate("k", Context{Key: "u", Attributes: map[string]any{"plan": "beta", "country": "NL"}}); d.Variant != "blue" || d.Value != "blue" {
		t.Fatalf("both clauses: %+v", d)
	}
	if d := s.Evaluate("k", Context{Key: "u", Attributes: map[string]any{"plan": "beta", "country": "DE"}}); d.Variant != "on" {
		t.Fatalf("second rule: %+v", d)
	}
}

func TestBadDefinitions(t *testing.T) {
	mut := func(f func(*Flag)) []Flag {
		g := rolloutFlag("k", 5)
		f(&g)
		return []Flag{g}
	}
	tests := []struct {
		name  string
		flags []Flag
		field string
		msg   string
	}{
		{"unknown control", mut(func(f *Flag) { f.Control = "nope" }), "control", `unknown variant "nope"`},
		{"missing control", mut(func(f *Flag) { f.Control = "" }), "control", "is required"},
		{"unknown treatment", mut(func(f *Flag) { f.Treatment = "nope" }), "treatment", "unknown variant"},
		{"unknown target variant", mut(func(f *Flag) { f.Targets = []Target{{Variant: "x", Units: []string{"u"}}} }), "targets[0].variant", "unknown variant"},
		{"target without units", mut(func(f *Flag) { f.Targets = []Target{{Variant: "on"}} }), "targets[0].units", "at least one"},
		{"unknown rule variant", mut(func(f *Flag) {
			f.Rules = []Rule{{Variant: "x", When: []Clause{{Attribute: "a", Op: OpIn, Values: Values{"1"}}}}}
		}), "rules[0].variant", "unknown variant"},
		{"percent above 100", mut(func(f *Flag) { f.Rollout.Percent = 100.5 }), "rollout.percent", "out of range"},
		{"negative percent", mut(func(f *Flag) { f.Rollout.Percent = -1 }), "rollout.percent", "out of range"},
		{"four decimals", mut(func(f *Flag) { f.Rollout.Percent = 1.2345 }), "rollout.percent", "more than 3 decimals"},
		{"bad regexp", mut(func(f *Flag) {
			f.Rules = []Rule{{Variant: "on", When: []Clause{{Attribute: "a", Op: OpMatches, Values: Values{"("}}}}}
		}), "rules[0].when[0]", "bad regular expression"},
		{"unknown op", mut(func(f *Flag) {
			f.Rules = []Rule{{Variant: "on", When: []Clause{{Attribute: "a", Op: "like", Values: Values{"x"}}}}}
		}), "rules[0].when[0]", `unknown op "like"`},
		{"number op on text", mut(func(f *Flag) {
			f.Rules = []Rule{{Variant: "on", When: []Clause{{Attribute: "a", Op: OpLT, Values: Values{"ten"}}}}}
		}), "rules[0].when[0]", "not a number"},
		{"bad semver", mut(func(f *Flag) {
			f.Rules = []Rule{{Variant: "on", When: []Clause{{Attribute: "a", Op: OpSemverLT, Values: Values{"x.y"}}}}}
		}), "rules[0].when[0]", "not a semantic version"},
		{"bad key", mut(func(f *Flag) { f.Key = "has space" }), "key", "must be"},
		{"no variants", mut(func(f *Flag) { f.Variants = nil }), "variants", "at least one"},
		{"duplicate keys", []Flag{rolloutFlag("k", 1), rolloutFlag("k", 2)}, "key", "duplicate key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSnapshot(1, tc.flags)
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Message, tc.msg) || fe.Flag != tc.flags[0].Key {
				t.Fatalf("got flag %q field %q message %q, want field %q containing %q", fe.Flag, fe.Field, fe.Message, tc.field, tc.msg)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   "flags:\n  - key: k\n    variants: {a: 1}\n    control: a\n    colour: red\n",
		"not yaml":        "flags: [",
		"empty":           "",
		"values not list": "flags:\n  - key: k\n    variants: {a: 1}\n    control: a\n    rules: [{variant: a, when: [{attribute: x, op: in, values: 3}]}]\n",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBadPutKeepsOldSnapshot(t *testing.T) {
	s, err := NewSnapshot(1, []Flag{rolloutFlag("k", 100)})
	if err != nil {
		t.Fatal(err)
	}
	bad := rolloutFlag("k", 100)
	bad.Control = "missing"
	bad.Version = 9
	if n, err := s.Put(bad); err == nil || n != nil {
		t.Fatalf("bad put accepted: %v", err)
	}
	if d := s.Evaluate("k", Context{Key: "u"}); d.Variant != "on" || s.Revision() != 1 {
		t.Fatalf("old snapshot changed: %+v", d)
	}
	good := rolloutFlag("k", 0)
	good.Version = 9
	n, err := s.Put(good)
	if err != nil {
		t.Fatal(err)
	}
	if n.Evaluate("k", Context{Key: "u"}).Variant != "off" || n.Revision() != 9 || s.Evaluate("k", Context{Key: "u"}).Variant != "on" {
		t.Fatal("put did not copy on write")
	}
	if d := n.Delete("k", 10); d.Len() != 0 || d.Revision() != 10 || n.Len() != 1 {
		t.Fatal("delete did not copy on write")
	}
}

// A batch of changes lands in one copy: the good ones apply, a bad one keeps
// its flag's earlier definition and is named, and the old snapshot stays.
func TestUpdateAppliesABatch(t *testing.T) {
	s, err := NewSnapshot(4, []Flag{rolloutFlag("a", 100), rolloutFlag("b", 100), rolloutFlag("c", 100)})
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := rolloutFlag("a", 0), rolloutFlag("b", 0), rolloutFlag("d", 100)
	b.Control = "missing"
	n, err := s.Update(7, []Flag{a, b, d}, []string{"c", "absent"})
	if err == nil || !strings.Contains(err.Error(), "b") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %v, want one naming flag b's control", err)
	}
	u := Context{Key: "u"}
	if n.Revision() != 7 || n.Len() != 3 || n.Evaluate("a", u).Variant != "off" || n.Evaluate("b", u).Variant != "on" || n.Evaluate("d", u).Variant != "on" {
		t.Errorf("after the batch: revision %d, %d flags, a %s, b %s, d %s; want 7, 3 (a, b, d), off, on (kept), on",
			n.Revision(), n.Len(), n.Evaluate("a", u).Variant, n.Evaluate("b", u).Variant, n.Evaluate("d", u).Variant)
	}
	if _, ok := n.Flag("c"); ok {
		t.Error("c was deleted and is still there")
	}
	if s.Revision() != 4 || s.Len() != 3 || s.Evaluate("a", u).Variant != "on" {
		t.Error("the batch changed the snapshot it was applied to")
	}
	if older, err := n.Update(5, nil, nil); err != nil || older.Revision() != 7 {
		t.Errorf("an older revision moved the snapshot back to %d (err %v)", older.Revision(), err)
	}
}
