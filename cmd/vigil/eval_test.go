package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/internal/explain"
)

const evalFlags = `flags:
  - key: new-checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets:
      - {variant: on, units: [qa-1]}
    rules:
      - variant: on
        when: [{attribute: plan, op: in, values: [beta]}]
    rollout:
      percent: 5
`

func runEval(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"eval"}, args...))
	cmd.SetOut(&out)
	cmd.SetIn(strings.NewReader(stdin))
	err := cmd.Execute()
	return out.String(), err
}

func writeEvalFlags(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEval(t *testing.T) {
	path := writeEvalFlags(t, evalFlags)
	tests := []struct {
		args []string
		want string
	}{
		// new-checkout/user-1 is in bucket 39756 (docs/bucketing.md): outside 5%.
		{[]string{"new-checkout", "user-1"}, `{"unit":"user-1","key":"new-checkout","value":false,"variant":"off","reason":"split","bucket":39756,"percent":5}`},
		{[]string{"new-checkout", "qa-1"}, `{"unit":"qa-1","key":"new-checkout","value":true,"variant":"on","reason":"targeting_match","bucket":`},
		{[]string{"new-checkout", "user-1", "plan=beta"}, `{"unit":"user-1","key":"new-checkout","value":true,"variant":"on","reason":"targeting_match","bucket":39756,"percent":5}`},
		{[]string{"new-checkout", "", "plan=free"}, `{"unit":"","key":"new-checkout","value":false,"variant":"off","reason":"error","errorType":"targeting_key_missing"}`},
	}
	for _, tt := range tests {
		out, err := runEval(t, "", append([]string{"-f", path}, tt.args...)...)
		if err != nil {
			t.Fatalf("eval %v: %v", tt.args, err)
		}
		if !strings.Contains(out, tt.want) {
			t.Errorf("eval %v = %s, want it to contain %s", tt.args, out, tt.want)
		}
	}
}

func TestEvalUnitsFromStdin(t *testing.T) {
	path := writeEvalFlags(t, evalFlags)
	out, err := runEval(t, "user-1\nqa-1\r\n\n", "-f", path, "--units", "-", "new-checkout")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines for 3 units:\n%s", len(lines), out)
	}
	var got []explain.Result
	for _, l := range lines {
		var r explain.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, r)
	}
	if got[0].Unit != "user-1" || got[0].Variant != "off" || got[1].Unit != "qa-1" || got[1].Variant != "on" ||
		got[2].Unit != "" || got[2].ErrorType != "targeting_key_missing" {
		t.Errorf("results %+v", got)
	}
}

func TestEvalErrors(t *testing.T) {
	good := writeEvalFlags(t, evalFlags)
	bad := writeEvalFlags(t, strings.Replace(evalFlags, "control: off", "control: nope", 1))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"new-checkout", "u"}, "-f FLAGS_FILE is required"},
		{[]string{"-f", good, "new-checkout"}, "want KEY UNIT"},
		{[]string{"-f", good, "new-checkout", "u", "plan"}, `attribute 1 "plan": want attr=value`},
		{[]string{"-f", good, "--units", "users.txt", "new-checkout"}, "--units takes only -"},
		{[]string{"-f", bad, "new-checkout", "u"}, "new-checkout"},
		{[]string{"-f", filepath.Join(t.TempDir(), "none.yaml"), "k", "u"}, "none.yaml"},
		// A key the file lacks is an error, not a default a script could
		// take for an answer.
		{[]string{"-f", good, "missing", "user-1"}, `flag "missing" is not in ` + good},
		{[]string{"-f", good, "--units", "-", "missing"}, `flag "missing" is not in`},
	}
	for _, tt := range tests {
		if _, err := runEval(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("eval %v: error %v, want one containing %q", tt.args, err, tt.want)
		}
	}
}
