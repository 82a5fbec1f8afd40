package flag

import (
	"errors"
	"strings"
	"testing"
)

// TestParsePositions: a mistake in a flags file is reported with the line
// and column where it is, in YAML and in JSON.
func TestParsePositions(t *testing.T) {
	const good = "flags:\n  - key: k\n    variants: {on: true, off: false}\n    control: off\n    treatment: on\n"
	for name, tc := range map[string]struct {
		doc        string
		line, col  int
		path, want string
	}{
		"unknown field":        {good + "    enabeld: true\n", 6, 5, "flags[0].enabeld", "unknown field"},
		"nested unknown field": {good + "    rules: [{variant: on, when: [{attribute: plan, op: in, valeus: [beta]}]}]\n", 6, 60, "flags[0].rules[0].when[0].valeus", "unknown field"},
		"top-level typo":       {"flag:\n  - key: k\n", 1, 1, "flag", "unknown field"},
		"number for bool":      {good + "    enabled: 1\n", 6, 14, "flags[0].enabled", `want true or false, got "1"`},
		"string for percent":   {good + "    rollout: {percent: five}\n", 6, 24, "flags[0].rollout.percent", `want a number, got "five"`},
		"scalar for a list":    {good + "    targets: qa\n", 6, 14, "flags[0].targets", "want a list"},
		"a list, not a file":   {"- key: k\n", 1, 1, "", "want a mapping, got a list"},
		"json":                 {"{\"flags\": [{\"key\": \"k\",\n \"contrl\": \"a\"}]}", 2, 2, "flags[0].contrl", "unknown field"},
		"key twice":            {good + "    control: on\n", 6, 5, "flags[0].control", "the key is given twice"},
		"nested key twice":     {"{\"flags\": [{\"key\": \"k\", \"variants\": {\"a\": 1,\n \"a\": 2}}]}", 2, 2, "flags[0].variants.a", "the key is given twice"},
		"one flag":             {"key: k\nvariants: {a: 1}\ncontrol: a\ntreatment: a\nrollout: {percnt: 5}\n", 5, 11, "rollout.percnt", "unknown field"},
	} {
		parse := Parse
		if name == "one flag" {
			parse = ParseFileOrFlag
		}
		_, err := parse([]byte(tc.doc))
		var pe *PositionError
		if !errors.As(err, &pe) {
			t.Errorf("%s: %v, want a PositionError", name, err)
			continue
		}
		if pe.Line != tc.line || pe.Column != tc.col || pe.Path != tc.path || !strings.Contains(pe.Msg, tc.want) {
			t.Errorf("%s: %+v, want line %d column %d path %q message %q", name, pe, tc.line, tc.col, tc.path, tc.want)
		}
		if !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: %q does not say the line", name, err)
		}
	}
}

// TestParseOneFlag: one flag, as `vigil get flag KEY` prints it, reads as a
// file of that flag for apply, and is not a flags file for the SDKs; names
// match their fields in any case, as in JSON.
func TestParseOneFlag(t *testing.T) {
	doc := []byte("key: k\nVariants: {a: 1}\ncontrol: a\ntreatment: a\nenabled: true\nversion: 3\nrollout: {percent: 5}\n")
	if _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), "line 1, column 1: key: unknown field") {
		t.Errorf("Parse of one flag: %v", err)
	}
	f, err := ParseFileOrFlag(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Flags) != 1 || f.Flags[0].Key != "k" || f.Flags[0].Rollout.Percent != 5 || len(f.Flags[0].Variants) != 1 {
		t.Fatalf("%+v", f)
	}
}
