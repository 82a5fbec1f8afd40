package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadVersion(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.time", Value: "2026-11-25T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name                   string
		bi                     *debug.BuildInfo
		ldVersion, ldCommit, d string
		want                   string
	}{
		{"go install of a version", bi, "", "", "", "v1.2.3 (commit 0123abc, modified, built 2026-11-25T10:00:00Z, go1.26.7)"},
		{"linker flags win", bi, "v2.0.0", "fedcba9", "2026-12-01T00:00:00Z", "v2.0.0 (commit fedcba9, built 2026-12-01T00:00:00Z, go1.26.7)"},
		{"nothing recorded", nil, "", "", "", "(devel) (commit unknown, built unknown, go"},
	} {
		if got := readVersion(tc.bi, tc.ldVersion, tc.ldCommit, tc.d).String(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionFromLinker builds vigil as `make build` does and checks what
// `vigil version` and `vigil --version` print.
func TestVersionFromLinker(t *testing.T) {
	mk := exec.Command("make", "-n", "--no-print-directory", "-C", "../..", "build")
	// Under make test, make's own variables would turn the dry run into a
	// sub-make's.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
			mk.Env = append(mk.Env, kv)
		}
	}
	out, err := mk.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-X main.version=") || !strings.Contains(string(out), "-X main.commit=") || !strings.Contains(string(out), "-X main.date=") {
		t.Fatalf("make build does not set the version: %v\n%s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "vigil")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7 -X main.commit=abcdef0 -X main.date=2026-11-25T10:00:00Z", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := "v9.8.7 (commit abcdef0, built 2026-11-25T10:00:00Z, go"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || !strings.HasPrefix(string(out), "vigil ") || !strings.Contains(string(out), want) {
			t.Errorf("vigil %s: %v %q, want %q", args[0], err, out, want)
		}
	}
}
