package crosslang

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// rePieces are the RE2 constructs random patterns are built from: every
// construct the TypeScript translation handles, in the spellings where
// JavaScript's own reading differs.
var rePieces = []string{
	"a", "b", "é", "🙂", "K", "ſ", ".", "^", "$", `\A`, `\z`, `\b`, `\B`, `\d`, `\D`, `\s`, `\S`, `\w`, `\W`,
	`\pL`, `\PL`, `\p{Greek}`, `\p{^L}`, `\pN`, `[a-c]`, `[^a-c]`, `[]a]`, `[^]a]`, `[[:alpha:]]`, `[[:^digit:]]`,
	`[[:space:]x]`, `[\d\s]`, `[^\S]`, `[a\-z]`, `[\x{1F600}-\x{1F64F}]`, `\x41`, `\x{e9}`, `\101`, `\0`, `\a`,
	`\t`, `\n`, `\r`, `\v`, `\f`, `\.`, `\!`, `\#`, `\Q.*\E`, "{", "}", "]", `a{,2}`, "/", "-", " ",
}

var reWrappers = []func(string) string{
	func(s string) string { return s },
	func(s string) string { return "(" + s + ")" },
	func(s string) string { return "(?:" + s + ")*" },
	func(s string) string { return s + "+" },
	func(s string) string { return s + "?" },
	func(s string) string { return s + "{1,3}" },
	func(s string) string { return s + "*?" },
	func(s string) string { return "(?P<n>" + s + ")" },
	func(s string) string { return "(?s:" + s + ")" },
	func(s string) string { return "(?m:" + s + ")" },
	func(s string) string { return s + "|x" },
}

var reFlags = []string{"", "", "", "(?i)", "(?s)", "(?m)", "(?U)", "(?is)", "(?ms)"}

// reInputs are the strings every pattern is matched against.
var reInputs = []string{
	"", "a", "b", "ab", "aab", "abc", "A", "B", "é", "É", "e\u0301", "🙂", "😀", "K", "k", "K", "ſ", "s", "S",
	"a\nb", "a\rb", "a\u2028b", "\n", "x\ny", " ", "\t", "\u00a0", "\v", "\f", "1", "٣", "x1 y2", "{", "}", "]", "a{,2}",
	"αβγ", "Ωmega", "!", "#", ".*", "a.b", "/", "-", "\x00", "\a", "abc\n", "\nabc", "aaaa", "ba", "xyz",
}

// TestRegexAgreesWithGo builds thousands of RE2 patterns from the pieces
// above, keeps those Go accepts, and requires the TypeScript and Python SDKs
// to match exactly the same inputs with each, or to refuse it as outside
// their subset (only patterns with case folding may be refused).
func TestRegexAgreesWithGo(t *testing.T) {
	var patterns []string
	var compiled []*regexp.Regexp
	state := uint64(42)
	next := func(n int) int {
		state = state*6364136223846793005 + 1442695040888963407
		return int((state >> 33) % uint64(n))
	}
	for len(patterns) < 3000 {
		var b strings.Builder
		b.WriteString(reFlags[next(len(reFlags))])
		for range 1 + next(4) {
			b.WriteString(reWrappers[next(len(reWrappers))](rePieces[next(len(rePieces))]))
		}
		if next(10) == 0 {
			b.WriteString("(?i:" + rePieces[next(len(rePieces))] + ")")
		}
		re, err := regexp.Compile(b.String())
		if err != nil {
			continue
		}
		patterns = append(patterns, b.String())
		compiled = append(compiled, re)
	}
	script := tool(t, "regex.js")
	input, _ := json.Marshal(map[string]any{"patterns": patterns, "inputs": reInputs})
	path := filepath.Join(t.TempDir(), "regex.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", script, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	checkRegexResults(t, "TypeScript", patterns, compiled, stdout.Bytes())
	checkRegexResults(t, "Python", patterns, compiled, pythonRun(t, "regex", input))
}

// checkRegexResults compares an SDK's answers for patterns (its regex
// tool's output) with Go's.
func checkRegexResults(t *testing.T, lang string, patterns []string, compiled []*regexp.Regexp, output []byte) {
	t.Helper()
	var out struct {
		Results []string `json:"results"`
	}
	if err := json.Unmarshal(output, &out); err != nil || len(out.Results) != len(patterns) {
		t.Fatalf("%s output: %v, %d results for %d patterns", lang, err, len(out.Results), len(patterns))
	}
	refused, bad := 0, 0
	for i, p := range patterns {
		got := out.Results[i]
		if strings.HasPrefix(got, "U: ") {
			refused++
			// The subset leaves out only what case folding makes differ:
			// (?i) inside the pattern, and \b, \B, \W under (?i).
			if !strings.Contains(p, "(?i") {
				bad++
				if bad <= 10 {
					t.Errorf("%s refused pattern %q: %s", lang, p, got)
				}
			}
			continue
		}
		var want strings.Builder
		for _, s := range reInputs {
			if compiled[i].MatchString(s) {
				want.WriteByte('1')
			} else {
				want.WriteByte('0')
			}
		}
		if got != want.String() {
			bad++
			if bad <= 10 {
				for j := range reInputs {
					if got[j] != want.String()[j] {
						t.Errorf("pattern %q on %q: %s %c, Go %c", p, reInputs[j], lang, got[j], want.String()[j])
						break
					}
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d patterns disagree (%d refused)", lang, bad, len(patterns), refused)
	}
	if refused > len(patterns)/5 {
		t.Errorf("%s: %d of %d patterns refused: the subset is too small", lang, refused, len(patterns))
	}
	t.Logf("%s: %d patterns agree on %d inputs each; %d refused as outside the subset", lang, len(patterns)-refused, len(reInputs), refused)
}
