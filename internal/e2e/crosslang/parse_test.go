package crosslang

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// flagsDocuments are flags files whose YAML or JSON spelling the two
// parsers could read differently.
var flagsDocuments = []string{
	// YAML 1.2 scalars: on/off/yes/no are strings; numbers in every notation.
	`flags:
  - key: scalars
    variants: {on: on, off: off, yes: yes, no: no, n: ~, h: 0x1F, o: 0o17, e: 1e3, d: .5, p: +1, z: 09, f: 007.5, t: true, s: "007", date: "2026-01-01"}
    control: "off"
    enabled: true
    rules: [{variant: "on", when: [{attribute: a, op: in, values: [10, 10.50, 1e3, true, x, 007, -0]}]}]`,
	// Anchors and aliases, block styles, comments.
	`# comment
flags:
  - &base
    key: a
    variants:
      c: {limit: 10, tags: [x, y]}
      t: [1, 2, 3]
    control: c
    treatment: t
    enabled: true
  - <<: *base
    key: b`,
	"flags:\n  - key: tabs\n    variants: {a: \"a\\tb\", b: 'it''s'}\n    control: a\n    enabled: true\n    rollout: {percent: 12.345}\n    treatment: b\n",
	`{"flags": [{"key": "json", "variants": {"a": 1, "b": {"x": null}}, "control": "a", "treatment": "b", "enabled": true, "rollout": {"percent": 50}, "salt": "s", "targets": [{"variant": "b", "units": ["u1"]}]}]}`,
	// Rejected: unknown field, duplicate key, bad percent, empty document,
	// duplicate flag, unknown variant, a bad regular expression.
	"flags:\n  - key: x\n    variants: {a: 1}\n    control: a\n    typo: 1\n",
	"flags:\n  - key: x\n    variants: {a: .inf}\n    control: a\n",
	"flags:\n  - key: x\n    key: y\n    variants: {a: 1}\n    control: a\n",
	"flags:\n  - key: x\n    variants: {a: 1}\n    control: a\n    treatment: a\n    rollout: {percent: 12.3456}\n",
	"",
	"flags:\n  - {key: x, variants: {a: 1}, control: a}\n  - {key: x, variants: {a: 1}, control: a}\n",
	"flags:\n  - {key: x, variants: {a: 1}, control: b}\n",
	"flags:\n  - {key: x, variants: {a: 1}, control: a, rules: [{variant: a, when: [{attribute: q, op: matches, values: ['(?=x)']}]}]}\n",
	"flags: [{key: x, variants: {a: 1}, control: a, enabled: maybe}]\n",
	"flags: [{key: x, variants: {a: 1}, control: a, rules: [{variant: a, when: [{attribute: q, op: lt, values: [abc]}]}]}]\n",
	"other: 1\n",
}

// goOnlyScalars are plain YAML scalars that Go's parser (yaml.v3) reads
// the YAML 1.1 way and YAML 1.2 another: the TypeScript SDK refuses them
// rather than give them another meaning.
var goOnlyScalars = []string{"0777", "1_000", "0b101", "0x1_F", "2026-01-01", "2026-01-01T10:00:00Z"}

// TestFlagsFilesParseAlike parses every document in both SDKs and requires
// the same verdict and, when both accept, the same flags; a document with a
// scalar only Go reads must be refused by TypeScript with a clear error.
func TestFlagsFilesParseAlike(t *testing.T) {
	docs := append([]string(nil), flagsDocuments...)
	for _, v := range goOnlyScalars {
		docs = append(docs, "flags:\n  - {key: x, variants: {a: "+v+"}, control: a}\n")
	}
	input, _ := json.Marshal(map[string]any{"documents": docs})
	path := filepath.Join(t.TempDir(), "parse.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", tool(t, "parse.js"), path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node parse.js: %v\n%s", err, stderr.String())
	}
	var out struct {
		Results []struct {
			OK    bool            `json:"ok"`
			Flags json.RawMessage `json:"flags"`
			Error string          `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out.Results) != len(docs) {
		t.Fatalf("node output: %v, %d results", err, len(out.Results))
	}
	accepted := 0
	for i, doc := range docs {
		goFile, goErr := flag.Parse([]byte(doc))
		js := out.Results[i]
		if i >= len(flagsDocuments) {
			if goErr != nil || js.OK || !strings.Contains(js.Error, "reads differently in Go's YAML parser") {
				t.Errorf("document %d: Go error %v, TypeScript ok=%v %q; want Go to accept and TypeScript to refuse the scalar\n%s", i, goErr, js.OK, js.Error, doc)
			}
			continue
		}
		if (goErr == nil) != js.OK {
			t.Errorf("document %d: Go error %v, TypeScript ok=%v error %q\n%s", i, goErr, js.OK, js.Error, doc)
			continue
		}
		if goErr != nil {
			continue
		}
		accepted++
		var jsFlags []flag.Flag
		if err := json.Unmarshal(js.Flags, &jsFlags); err != nil {
			t.Fatalf("document %d: TypeScript flags: %v", i, err)
		}
		want, _ := json.Marshal(goFile.Flags)
		got, _ := json.Marshal(jsFlags)
		if !bytes.Equal(canonical(t, want), canonical(t, got)) {
			t.Errorf("document %d parses differently:\nGo         %s\nTypeScript %s", i, want, got)
		}
	}
	if accepted < 4 {
		t.Errorf("only %d documents accepted by both; the comparison checks little", accepted)
	}
}

// canonical re-encodes JSON with sorted keys and Go's number spelling.
func canonical(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return out
}
