package flag

import (
	"errors"
	"slices"
	"testing"
)

// TestNulls: null where a value is required is refused in a flags file,
// YAML or JSON, and in one flag as JSON, every one named by flag and field;
// where it means what leaving the field out means, and as a variant's
// value, it is taken.
func TestNulls(t *testing.T) {
	fields := func(err error) []string {
		var out []string
		for _, e := range Errors(err) {
			var fe *FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%v is not a FieldError", e)
			}
			out = append(out, fe.Flag+" "+fe.Field)
		}
		return out
	}
	for name, tc := range map[string]struct {
		doc  string
		want []string
	}{
		"yaml": {"flags:\n  - key: a\n    variants: {on: 1}\n    control: on\n    enabled:\n    targets: [{variant: on, units: [x, ~]}]\n" +
			"  - variants: {on: 1}\n    control: null\n    treatment: on\n    rollout: {percent: null}\n",
			[]string{"a enabled", "a targets[0].units[1]", "#1 control", "#1 rollout.percent"}},
		"json": {`{"flags":[{"key":"a","variants":{"on":1},"control":"on","rules":[{"variant":null,"when":[{"attribute":"x","op":null,"values":[1,null]}]}]}]}`,
			[]string{"a rules[0].variant", "a rules[0].when[0].op", "a rules[0].when[0].values[1]"}},
		"NUL escapes": {"flags:\n  - key: a\n    description: \"x\\x00\"\n    variants: {\"on\\0\": 1, on: {\"\\u0000\": 2}}\n    control: on\n",
			[]string{"a description", "a variants.on.\x00", "a variants.on\x00"}},
		"left out": {"flags:\n  - key: a\n    description:\n    variants: {none: null, on: {x: [null]}}\n    control: none\n    treatment:\n    salt: null\n    targets:\n    rules: [{variant: on, when: null}]\n    rollout:\n", nil},
	} {
		_, err := Parse([]byte(tc.doc))
		if got := fields(err); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
	err := CheckNulls("k", []byte(`{"Enabled":null,"variants":{"on":null},"rollout":{"percent":null,"plan":null},"targets":[null]}`))
	if got, want := fields(err), []string{"k Enabled", "k rollout.percent", "k targets[0]"}; !slices.Equal(got, want) {
		t.Errorf("CheckNulls: %v, want %v", got, want)
	}
	if err := CheckNulls("k", []byte(`{"key":"k","description":"nullable"}`)); err != nil {
		t.Errorf("CheckNulls without a null: %v", err)
	}
}
