// Package deploy_test checks that the two descriptions of a release, make
// release-snapshot and .goreleaser.yaml, build the same things the same way.
// goreleaser itself is not run here: no approved release of it is available
// to this project. CI runs make release-snapshot, which cross-builds every
// platform.
package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/deploy/internal/maketest"
)

var root, _ = filepath.Abs("..")

// goreleaser is the part of .goreleaser.yaml this test reads.
type goreleaser struct {
	Builds []struct {
		Main    string
		Env     []string
		Goos    []string
		Goarch  []string
		Flags   []string
		Ldflags []string
	}
	Archives []struct {
		NameTemplate string `json:"name_template"`
	}
	Checksum struct {
		NameTemplate string `json:"name_template"`
	}
	Dockers []struct {
		Dockerfile string
		Platforms  []string
	} `json:"dockers_v2"`
}

func TestReleaseConfigs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var g goreleaser
	if err := yaml.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Builds) != 1 || len(g.Archives) != 1 || len(g.Dockers) != 1 {
		t.Fatalf(".goreleaser.yaml: %d builds, %d archives, %d images, want one of each", len(g.Builds), len(g.Archives), len(g.Dockers))
	}
	b := g.Builds[0]

	// make -n prints what make release-snapshot would run.
	const version = "v9.8.7"
	out, err := maketest.Command(root, "-n", "release-snapshot", "VERSION="+version).Output()
	if err != nil {
		t.Fatalf("make -n release-snapshot: %v", err)
	}
	snapshot := string(out)
	var platforms []string
	for _, os := range b.Goos {
		for _, arch := range b.Goarch {
			platforms = append(platforms, os+"/"+arch)
			build := fmt.Sprintf("CGO_ENABLED=0 GOOS=%s GOARCH=%s go build -trimpath", os, arch)
			archive := fmt.Sprintf("vigil_%s_%s_%s.tar.gz", version, os, arch)
			if !strings.Contains(snapshot, build) || !strings.Contains(snapshot, archive) {
				t.Errorf("make release-snapshot does not build %s/%s as goreleaser does (%q into %s):\n%s", os, arch, build, archive, snapshot)
			}
		}
	}
	if len(platforms) != 4 {
		t.Errorf("goreleaser builds %q, want linux and darwin on amd64 and arm64", platforms)
	}
	if n := strings.Count(snapshot, "go build "); n != len(platforms) {
		t.Errorf("make release-snapshot runs %d builds, goreleaser %d", n, len(platforms))
	}
	if b.Main != "./cmd/vigil" || !slices.Contains(b.Env, "CGO_ENABLED=0") || !slices.Contains(b.Flags, "-trimpath") {
		t.Errorf("goreleaser builds %s with env %q and flags %q, want ./cmd/vigil, CGO_ENABLED=0 and -trimpath", b.Main, b.Env, b.Flags)
	}
	for _, x := range []string{"-X main.version=", "-X main.commit=", "-X main.date="} {
		if !strings.Contains(strings.Join(b.Ldflags, " "), x) || !strings.Contains(snapshot, x) {
			t.Errorf("%s is not in both goreleaser's ldflags %q and make release-snapshot's", x, b.Ldflags)
		}
	}
	if want := "{{ .ProjectName }}_{{ .Version }}_{{ .Os }}_{{ .Arch }}"; g.Archives[0].NameTemplate != want {
		t.Errorf("goreleaser names archives %s, want %s as make release-snapshot does", g.Archives[0].NameTemplate, want)
	}
	if g.Checksum.NameTemplate != "checksums.txt" || !strings.Contains(snapshot, "> checksums.txt") {
		t.Errorf("checksums: goreleaser %q; want checksums.txt from both", g.Checksum.NameTemplate)
	}
	d := g.Dockers[0]
	if !slices.Equal(d.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("goreleaser's images are for %q, want linux/amd64 and linux/arm64 as make release-snapshot's", d.Platforms)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if !strings.Contains(snapshot, fmt.Sprintf("vigil-image_%s_%s.tar", version, arch)) {
			t.Errorf("make release-snapshot writes no %s image", arch)
		}
	}
	if _, err := os.Stat(filepath.Join(root, d.Dockerfile)); err != nil {
		t.Errorf("goreleaser's Dockerfile: %v", err)
	}
}
