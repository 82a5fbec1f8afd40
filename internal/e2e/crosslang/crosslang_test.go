package crosslang

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vigil-dev/vigil/internal/testenv/jstest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const units = 100000

// rolloutPercents are the rollout shares tested, chosen around the edges:
// the smallest step, values whose p*1000 is not exact in binary, and the
// ends.
var rolloutPercents = []float64{0, 0.001, 1, 12.345, 33.333, 50, 66.667, 99.999, 100}

// clauses are tested one per flag against every context's attribute "a",
// so that each operator's coercions are compared on every value kind.
var clauses = []flag.Clause{
	{Op: flag.OpIn, Values: flag.Values{"42", "true", "1000000000000000000000", "0.0000001", "-0", "ünï", "[1 a]", "map[k:v]"}},
	{Op: flag.OpNotIn, Values: flag.Values{"42", "x"}},
	{Op: flag.OpStartsWith, Values: flag.Values{"user-", "1e", "é"}},
	{Op: flag.OpEndsWith, Values: flag.Values{"0", "🙂"}},
	{Op: flag.OpContains, Values: flag.Values{".", "\u0301"}},
	{Op: flag.OpLT, Values: flag.Values{"10"}},
	{Op: flag.OpLTE, Values: flag.Values{"-1e3", "0x1p4"}},
	{Op: flag.OpGT, Values: flag.Values{"1e20"}},
	{Op: flag.OpGTE, Values: flag.Values{"inf"}},
	{Op: flag.OpSemverLT, Values: flag.Values{"1.2"}},
	{Op: flag.OpSemverGTE, Values: flag.Values{"v2.0.0-rc.2"}},
	{Op: flag.OpMatches, Values: flag.Values{`^user-[0-9]+$`}},
	{Op: flag.OpMatches, Values: flag.Values{`(?i)^ADMIN|É`}},
	{Op: flag.OpMatches, Values: flag.Values{`a.b`}},
	{Op: flag.OpMatches, Values: flag.Values{`(?s)a.b`}},
	{Op: flag.OpMatches, Values: flag.Values{`\s`, `\x{1F642}$`}},
	{Op: flag.OpMatches, Values: flag.Values{`^[[:alpha:]]+\d*$`}},
	{Op: flag.OpMatches, Values: flag.Values{`^\pL+$`, `\p{Greek}`}},
	{Op: flag.OpMatches, Values: flag.Values{`(?m)^x$`}},
	{Op: flag.OpMatches, Values: flag.Values{`^[]a-c]+$`, `\Q1.5\E`}},
	{Op: flag.OpMatches, Values: flag.Values{`^\w+\b.\B`}},
	{Op: flag.OpMatches, Values: flag.Values{`^.{2,4}$`, `a{,2}`}},
	{Op: flag.OpMatches, Values: flag.Values{`^[^a-z]$`}},
}

func crossFlags() []flag.Flag {
	onOff := map[string]json.RawMessage{"off": json.RawMessage("false"), "on": json.RawMessage("true")}
	var flags []flag.Flag
	salts := []string{"", "shared", "ünï/🙂", "x"}
	for i, p := range rolloutPercents {
		flags = append(flags, flag.Flag{
			Key: fmt.Sprintf("rollout-%d", i), Variants: onOff, Control: "off", Treatment: "on", Enabled: true,
			Salt: salts[i%len(salts)], Rollout: &flag.Rollout{Percent: p},
		})
	}
	flags = append(flags, flag.Flag{
		Key: "targeted", Variants: onOff, Control: "off", Treatment: "on", Enabled: true,
		Targets: []flag.Target{{Variant: "on", Units: []string{"user-7", "ünïcødé-3"}}},
		Rules:   []flag.Rule{{Variant: "off", When: []flag.Clause{{Attribute: "a", Op: flag.OpIn, Values: flag.Values{"true"}}}}},
		Rollout: &flag.Rollout{Percent: 25},
	}, flag.Flag{
		Key: "disabled", Variants: onOff, Control: "off", Treatment: "on", Rollout: &flag.Rollout{Percent: 100},
	})
	for i, c := range clauses {
		c.Attribute = "a"
		flags = append(flags, flag.Flag{
			Key: fmt.Sprintf("op-%d-%s", i, c.Op), Variants: onOff, Control: "off", Enabled: true,
			Rules: []flag.Rule{{Variant: "on", When: []flag.Clause{c}}},
		})
	}
	for i := range flags {
		flags[i].Version = int64(i + 1)
	}
	return flags
}

// crossUnits returns n unit keys of many shapes: ids, numbers, multi-byte
// scripts, emoji, combining marks, control characters, and long keys.
func crossUnits(n int) []string {
	runes := []rune("aZ09-_/ .é\u0301üñßøΩжд中文日本🙂👨\u200d👩\U0010FFFF\u0000\t\n\r\u2028\uFFFD\u00a0")
	out := make([]string, 0, n)
	state := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 { // splitmix64: deterministic, no seed to record
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	for i := 0; len(out) < n; i++ {
		switch i % 5 {
		case 0:
			out = append(out, fmt.Sprintf("user-%d", i))
		case 1:
			out = append(out, fmt.Sprintf("%08x-%04x-%04x", next()>>32, next()>>48, next()>>48))
		case 2:
			out = append(out, fmt.Sprint(next()%1000000))
		default:
			l := int(next() % 40)
			if i%997 == 3 {
				l = 1500
			}
			var b strings.Builder
			for range l {
				b.WriteRune(runes[next()%uint64(len(runes))])
			}
			out = append(out, b.String())
		}
	}
	out[1] = "" // no unit key: targeting_key_missing on rollouts
	out[7] = "user-7"
	return out
}

type crossContext struct {
	Key        string         `json:"key"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// crossContexts pairs units with attribute values of every kind the
// operators coerce.
func crossContexts() []crossContext {
	values := []any{
		nil, true, false, 0.0, math.Copysign(0, -1), 9.99, 10, 10.5, 42, -1000, 16, 1e20, 1.5e20, 1e21, 1e-7, 123456789.0, math.MaxFloat64,
		"42", " 42 ", "\u00a042\u00a0", "\u202842", "\u008542", "\ufeff42", "0x1p4", "0x10", "1_000", "1__0", "inf", "-Infinity", "NaN", "nan", "+nan", "1e400", "1e-400", ".5", "5.", ".",
		"1.2", "1.1.9", "v1.1", "01.1.0", "1.2.0-rc.1", "2.0.0-rc.10", "2.0.0-rc.2", "2.0.0-rc.2+b", "2.0.0", "v3", "1.2.3-01", "1.2.3.4", "99999999999999999999.0.0", "2.0.0-rc.99999999999999999999",
		"user-12", "user-12\n", "user-", "admin", "ADMIN-x", "Ådmin", "é", "e\u0301", "É", "a\nb", "a\rb", "a\u2028b", "a\u0085b", "a b", "a\u00a0b", "x", "y\nx\nz", "x\r\n",
		"🙂", "a🙂", "abc", "abc9", "Ωmega", "中文", "αβγ", "]", "b]a", "1.5", "1x5", "ab cd", "ab.", "a", "ab", "abcde", "Z", "z", "ſ", "K",
		[]any{1.0, "a"}, []any{}, map[string]any{"k": "v"}, map[string]any{"b": 1e6, "a": []any{true, nil}},
	}
	values = append(values, generatedValues()...)
	var out []crossContext
	for i, v := range values {
		out = append(out, crossContext{Key: fmt.Sprintf("ctx-%d", i), Attributes: map[string]any{"a": v}})
	}
	out = append(out, crossContext{Key: "user-7", Attributes: map[string]any{"a": true}},
		crossContext{Key: "ctx-missing", Attributes: map[string]any{"b": "x"}}, crossContext{Key: "", Attributes: nil})
	return out
}

// generatedValues are attribute values built from pieces, to find spellings
// where the coercions differ: number-like strings for ParseFloat, version-like
// strings for semver, and numbers of every magnitude for their rendering.
func generatedValues() []any {
	state := uint64(7)
	next := func(n int) int {
		state = state*6364136223846793005 + 1442695040888963407
		return int((state >> 33) % uint64(n))
	}
	numPieces := []string{"0", "1", "9", "12", "_", ".", "e", "E", "+", "-", "0x", "p", "P", "a", "f", "inf", "nan", "Infinity", " ", "\u00a0", "\u0085", "\ufeff", "\u3000", "\t", "1e308", "e-400"}
	verPieces := []string{"v", "0", "1", "2", "10", "01", "99999999999999999999", ".", "-", "+", "rc", "alpha", "beta.2", "x", "0a", "00", " "}
	var out []any
	for range 1500 {
		var b strings.Builder
		for range 1 + next(5) {
			b.WriteString(numPieces[next(len(numPieces))])
		}
		out = append(out, b.String())
	}
	for range 1500 {
		var b strings.Builder
		for range 1 + next(7) {
			b.WriteString(verPieces[next(len(verPieces))])
		}
		out = append(out, b.String())
	}
	for range 1500 {
		// Mantissas with up to 17 digits, exponents across the range.
		m := float64(next(1<<30)) * math.Pow(10, float64(next(8))) / float64(1+next(999))
		e := math.Pow(10, float64(next(80)-40))
		if next(2) == 0 {
			m = -m
		}
		out = append(out, m*e)
	}
	return out
}

// nodeEvaluate runs the TypeScript SDK over input and returns, per flag,
// the outcome of each unit and each context.
func nodeEvaluate(t *testing.T, input []byte) (u, c map[string][]string) {
	t.Helper()
	script := tool(t, "evaluate.js")
	path := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", script, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	return decodeEvaluated(t, stdout.Bytes())
}

// pythonEvaluate runs the Python SDK over input, as nodeEvaluate does the
// TypeScript SDK, and also returns each unit's unit bucket as Python
// computes it, one digit a unit.
func pythonEvaluate(t *testing.T, input []byte) (u, c map[string][]string, unitBuckets string) {
	t.Helper()
	out := pythonRun(t, "evaluate", input)
	var b struct {
		UnitBuckets string `json:"unitBuckets"`
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("decode the Python evaluate tool's output: %v", err)
	}
	u, c = decodeEvaluated(t, out)
	return u, c, b.UnitBuckets
}

// decodeEvaluated reads the output of an SDK's evaluate tool: per flag, the
// outcome of each unit and each context.
func decodeEvaluated(t *testing.T, stdout []byte) (u, c map[string][]string) {
	t.Helper()
	var out struct {
		Outcomes []string          `json:"outcomes"`
		Units    map[string]string `json:"units"`
		Contexts map[string]string `json:"contexts"`
	}
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("decode the evaluate tool's output: %v", err)
	}
	decode := func(m map[string]string) map[string][]string {
		res := make(map[string][]string, len(m))
		for k, s := range m {
			for _, r := range s {
				i := int(r) - 0x100
				if i < 0 || i >= len(out.Outcomes) {
					t.Fatalf("flag %s: outcome code %U out of range", k, r)
				}
				res[k] = append(res[k], out.Outcomes[i])
			}
		}
		return res
	}
	return decode(out.Units), decode(out.Contexts)
}

// tool returns a compiled script of sdk/js/tools, building sdk/js first if
// needed.
func tool(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(jstest.Built(t), "tools", name)
}

func outcome(d flag.Detail) string {
	return d.Variant + "|" + string(d.Reason) + "|" + string(d.ErrorType)
}

// TestSameAnswerInGoTypeScriptAndPython evaluates every flag for 100,000
// units and for contexts with every kind of attribute in the three SDKs, and
// requires identical variants, reasons and error types.
func TestSameAnswerInGoTypeScriptAndPython(t *testing.T) {
	flags := crossFlags()
	unitKeys := crossUnits(units)
	for _, u := range unitKeys {
		if !utf8.ValidString(u) {
			t.Fatalf("unit %q is not valid UTF-8", u)
		}
	}
	input, err := json.Marshal(map[string]any{"flags": flags, "units": unitKeys, "contexts": crossContexts()})
	if err != nil {
		t.Fatal(err)
	}
	// Go evaluates exactly what the TypeScript side reads: the JSON.
	var doc struct {
		Flags    []flag.Flag    `json:"flags"`
		Contexts []crossContext `json:"contexts"`
	}
	if err := json.Unmarshal(input, &doc); err != nil {
		t.Fatal(err)
	}
	snap, err := flag.NewSnapshot(1, doc.Flags)
	if err != nil {
		t.Fatal(err)
	}
	jsUnits, jsContexts := nodeEvaluate(t, input)
	pyUnits, pyContexts, pyUnitBuckets := pythonEvaluate(t, input)
	languages := []struct {
		name            string
		units, contexts map[string][]string
	}{{"TypeScript", jsUnits, jsContexts}, {"Python", pyUnits, pyContexts}}

	mismatches := 0
	byFlag := map[string]int{}
	report := func(format string, args ...any) {
		mismatches++
		byFlag[args[0].(string)]++
		if mismatches <= 20 {
			t.Errorf(format, args...)
		}
	}
	treated := map[string]int{}
	for _, f := range doc.Flags {
		for _, l := range languages {
			if got := len(l.units[f.Key]); got != len(unitKeys) {
				t.Fatalf("flag %s: %s answered for %d units, want %d", f.Key, l.name, got, len(unitKeys))
			}
			if got := len(l.contexts[f.Key]); got != len(doc.Contexts) {
				t.Fatalf("flag %s: %s answered for %d contexts, want %d", f.Key, l.name, got, len(doc.Contexts))
			}
		}
		for i, u := range unitKeys {
			d := snap.Evaluate(f.Key, flag.Context{Key: u})
			if d.Variant == "on" {
				treated[f.Key]++
			}
			for _, l := range languages {
				if want, got := outcome(d), l.units[f.Key][i]; got != want {
					report("flag %s unit %q: %s %s, Go %s", f.Key, u, l.name, got, want)
				}
			}
		}
		for i, c := range doc.Contexts {
			d := snap.Evaluate(f.Key, flag.Context{Key: c.Key, Attributes: c.Attributes})
			for _, l := range languages {
				if want, got := outcome(d), l.contexts[f.Key][i]; got != want {
					report("flag %s attribute a=%#v: %s %s, Go %s", f.Key, c.Attributes["a"], l.name, got, want)
				}
			}
		}
	}
	if got := len(pyUnitBuckets); got != len(unitKeys) {
		t.Fatalf("Python gave %d unit buckets for %d units", got, len(unitKeys))
	}
	perBucket := make([]int, flag.UnitBuckets)
	for i, u := range unitKeys {
		want := flag.UnitBucket(u)
		perBucket[want]++
		if got := int(pyUnitBuckets[i] - '0'); got != want {
			report("flag %s unit %q: Python unit bucket %d, Go %d", "(unit buckets)", u, got, want)
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d answers differ from Go's: %v", mismatches, byFlag)
	}
	// The unit buckets mean something only if the units spread over all 8.
	for b, n := range perBucket {
		if n < len(unitKeys)/flag.UnitBuckets/2 {
			t.Errorf("unit bucket %d holds %d of %d units", b, n, len(unitKeys))
		}
	}
	// The comparison means something only if the flags split the units as
	// their percentages say: each share within 1 point of its target.
	for i, p := range rolloutPercents {
		key := fmt.Sprintf("rollout-%d", i)
		share := 100 * float64(treated[key]) / float64(len(unitKeys)-1)
		if math.Abs(share-p) > 1 {
			t.Errorf("flag %s at %v%%: %.3f%% of units in the treatment", key, p, share)
		}
	}
	// And the operator flags must not all answer alike.
	for i, c := range clauses {
		key := fmt.Sprintf("op-%d-%s", i, c.Op)
		on := 0
		for _, o := range jsContexts[key] {
			if strings.HasPrefix(o, "on|") {
				on++
			}
		}
		if on == 0 || on == len(doc.Contexts) {
			t.Errorf("flag %s: %d of %d contexts match; the clause tests nothing", key, on, len(doc.Contexts))
		}
	}
}
