package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/alerts"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func TestAlertsGenerate(t *testing.T) {
	file := writeFlagsFile(t, generateFlags)
	parsed, err := flag.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "vigil-rules.yaml")
	if _, err := runCLI(t, "", "alerts", "generate", "-f", file, "-o", out,
		"--team", "checkout", "--grafana-url", "https://grafana.example.com", "--for", "5m"); err != nil {
		t.Fatal(err)
	}
	want, err := alerts.Generate(parsed.Flags, alerts.Options{Team: "checkout", GrafanaURL: "https://grafana.example.com", For: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, out), want) {
		t.Error("the rule file differs from alerts.Generate's")
	}
	if _, err := runCLI(t, "", "alerts", "generate", "-f", file, "-o", out, "--grafana-url", "not a url"); err == nil || !strings.Contains(err.Error(), "Grafana URL") {
		t.Errorf("bad Grafana URL: err = %v", err)
	}
	if !bytes.Equal(readFile(t, out), want) {
		t.Error("a failed generation changed the rule file")
	}
}
