package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vigil-dev/vigil/dashboards"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const generateFlags = `flags:
  - key: new-checkout
    variants: {on: true, off: false}
    control: off
    treatment: on
    enabled: true
    rollout:
      percent: 5
      plan:
        metrics:
          - {name: latency, tolerance: 1.3, edges: [0.1, 0.3], maxP99: 500ms}
  - key: search.v2
    variants: {a: 1, b: 2}
    control: a
    treatment: b
    enabled: true
`

func writeFlagsFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDashboardsGenerateAll(t *testing.T) {
	file := writeFlagsFile(t, generateFlags)
	parsed, err := flag.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "dashboards")
	out, err := runCLI(t, "", "dashboards", "generate", "--all", "-f", file, "-o", dir, "--provisioning-path", "/etc/grafana/vigil")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range parsed.Flags {
		name := filepath.Join(dir, dashboards.UID(f.Key)+".json")
		want, err := dashboards.ForFlag(f, dashboards.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readFile(t, name), want) {
			t.Errorf("%s is not the flag's dashboard", name)
		}
		if !strings.Contains(out, "wrote "+name) {
			t.Errorf("output does not name %s:\n%s", name, out)
		}
	}
	overview, _ := dashboards.Overview(dashboards.Options{})
	if !bytes.Equal(readFile(t, filepath.Join(dir, "vigil-overview.json")), overview) {
		t.Error("vigil-overview.json is not the overview")
	}
	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "vigil-dashboards.yaml")), &prov); err != nil {
		t.Fatal(err)
	}
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != "/etc/grafana/vigil" {
		t.Errorf("provisioning: %+v", prov)
	}

	// search.v2 goes away: its dashboard goes too, and nothing that is not
	// a flag dashboard is touched.
	other := filepath.Join(dir, "my-own.json")
	if err := os.WriteFile(other, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	fewer := writeFlagsFile(t, generateFlags[:strings.Index(generateFlags, "  - key: search.v2")])
	out, err = runCLI(t, "", "dashboards", "generate", "--all", "-f", fewer, "-o", dir)
	if err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, dashboards.UID("search.v2")+".json")
	if _, err := os.Stat(gone); !os.IsNotExist(err) || !strings.Contains(out, "removed "+gone) {
		t.Errorf("stale dashboard %s: stat %v, output:\n%s", gone, err, out)
	}
	for _, keep := range []string{other, filepath.Join(dir, "vigil-flag-new-checkout.json")} {
		if _, err := os.Stat(keep); err != nil {
			t.Error(err)
		}
	}
	// Without --provisioning-path, Grafana is told DIR's absolute path.
	if err := yaml.Unmarshal(readFile(t, filepath.Join(dir, "vigil-dashboards.yaml")), &prov); err != nil || prov.Providers[0].Options.Path != dir {
		t.Errorf("provisioning path %q, want %q (%v)", prov.Providers[0].Options.Path, dir, err)
	}
}

func TestDashboardsGenerateOne(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, generateFlags, "dashboards", "generate", "--flag", "search.v2", "-f", "-", "-o", dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"vigil-dashboards.yaml", dashboards.UID("search.v2") + ".json"} // sorted
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("wrote %v, want %v", names, want)
	}
}

func TestDashboardsGenerateBadInput(t *testing.T) {
	file := writeFlagsFile(t, generateFlags)
	bad := writeFlagsFile(t, strings.Replace(generateFlags, "treatment: on", "treatment: maybe", 1))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no selection", []string{"-f", file}, "flag"},
		{"both selections", []string{"--all", "--flag", "x", "-f", file}, "flag"},
		{"unknown flag", []string{"--flag", "nope", "-f", file}, `flag "nope" not found in ` + file},
		{"invalid file", []string{"--all", "-f", bad}, "maybe"},
		{"missing file", []string{"--all", "-f", file + ".missing"}, "flags.yaml.missing"},
	}
	for _, tt := range tests {
		dir := filepath.Join(t.TempDir(), "out")
		_, err := runCLI(t, "", append([]string{"dashboards", "generate", "-o", dir}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: the output directory was created", tt.name)
		}
	}
}

// TestGenerateFromServer takes the flags from a running controller when no
// file is given.
func TestGenerateFromServer(t *testing.T) {
	t.Setenv("VIGIL_SERVER", startTestServer(t))
	t.Setenv("VIGIL_TOKEN", testAdminToken)
	if _, err := runCLI(t, generateFlags, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := runCLI(t, "", "dashboards", "generate", "--all", "-o", dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vigil-flag-new-checkout.json", dashboards.UID("search.v2") + ".json", "vigil-overview.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	rules, err := runCLI(t, "", "alerts", "generate", "--team", "search")
	if err != nil {
		t.Fatal(err)
	}
	// new-checkout's plan bounds its p99, which only its own group
	// watches; the judge's alerts cover every flag, search.v2 included.
	for _, want := range []string{"vigil-flag-new-checkout", "VigilTreatmentP99AboveMax", "VigilTreatmentLatencyRegression", "team: search"} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules from the server lack %q", want)
		}
	}
	// A wrong token is reported, not turned into an empty set of flags.
	t.Setenv("VIGIL_TOKEN", "wrong")
	if _, err := runCLI(t, "", "alerts", "generate"); err == nil || !strings.Contains(err.Error(), "list flags") {
		t.Errorf("wrong token: err = %v", err)
	}
}
