package flag

import (
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte(`{"flags":[{"key":"k","variants":{"a":1},"control":"a"}]}`))
	f.Add([]byte("flags:\n  - key: k\n    variants: {a: [1, {b: c}]}\n    control: a\n    rules: [{variant: a, when: [{attribute: x, op: matches, values: ['(']}]}]\n"))
	// Nulls where a value is required, and where one is not.
	f.Add([]byte("flags:\n  - key: k\n    variants: {a: null, b: {c: [null]}}\n    control: a\n    enabled:\n    rollout: {percent: ~}\n"))
	f.Add([]byte(`{"flags":[{"key":"k","variants":{"a":1},"control":"a","targets":[{"variant":"a","units":[null]}],"rules":[{"variant":"a","when":null}]},null]}`))
	f.Add([]byte("flags:\n  - {key: k, description: \"a\\x00\", variants: {\"a\\0\": 1, a: {\"\\u0000\": 2}}, control: a}\n"))
	// Keys given twice, in YAML and in JSON, and YAML keys that differ only
	// in their tags.
	f.Add([]byte("flags:\n  - key: k\n    variants: {a: 1, b: 2, a: 3, <<: {c: 4}}\n    control: a\n    key: j\n"))
	f.Add([]byte(`{"flags":[{"key":"k","variants":{"1":1,"1":2},"control":"1"}]}`))
	f.Add([]byte("flags:\n  - {key: k, variants: {1: a, \"1\": b, ? [x]: c, ? [y]: d}, control: \"1\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must compile and evaluate without panicking.
		s, err := NewSnapshot(1, file.Flags)
		if err != nil {
			t.Fatalf("Parse accepted flags that NewSnapshot rejects: %v", err)
		}
		for _, fl := range file.Flags {
			d := s.Evaluate(fl.Key, Context{Key: "u", Attributes: map[string]any{"x": "y", "plan": 3}})
			if d.Variant == "" {
				t.Fatalf("flag %s evaluated to no variant: %+v", fl.Key, d)
			}
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	f.Add("user-1", "beta", 5.0, "1.2.3")
	f.Add("", "", 0.0, "")
	f.Add("ünïcødé-🙂", "x\x00", 100.0, "v2.0.0-rc.1")
	snap, err := Parse([]byte(issueExample))
	if err != nil {
		f.Fatal(err)
	}
	base := snap.Flags[0]
	base.Rules = append(base.Rules,
		Rule{Variant: "on", When: []Clause{{Attribute: "v", Op: OpSemverGTE, Values: Values{"2.0.0"}}}},
		Rule{Variant: "on", When: []Clause{{Attribute: "n", Op: OpLT, Values: Values{"-1"}}, {Attribute: "plan", Op: OpMatches, Values: Values{"^z+$"}}}},
	)
	f.Fuzz(func(t *testing.T, unit, plan string, percent float64, version string) {
		fl := base
		fl.Rollout = &Rollout{Percent: percent}
		s, err := NewSnapshot(1, []Flag{fl})
		if err != nil {
			if _, perr := Millipercent(percent); perr == nil {
				t.Fatalf("valid percent %v rejected: %v", percent, err)
			}
			return
		}
		d := s.Evaluate("new-checkout", Context{Key: unit, Attributes: map[string]any{"plan": plan, "v": version, "n": percent}})
		if d.Variant != "on" && d.Variant != "off" {
			t.Fatalf("variant %q", d.Variant)
		}
		if unit == "" && d.Reason == ReasonSplit {
			t.Fatal("split without a unit key")
		}
		if d.Reason == ReasonSplit {
			m, _ := Millipercent(percent)
			if want := Bucket("new-checkout", unit) < m; (d.Variant == "on") != want {
				t.Fatalf("split disagrees with the bucket: %+v", d)
			}
		}
	})
}
