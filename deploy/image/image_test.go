package image_test

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vigil-dev/vigil/deploy/image"
	"github.com/vigil-dev/vigil/deploy/internal/maketest"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// root is the repository, whose Makefile builds the image.
var root, _ = filepath.Abs("../..")

// Stamps passed to make image, to be found in the image and the binary.
const (
	version  = "v9.8.7-test"
	revision = "0123456789abcdef0123456789abcdef01234567"
	created  = "2026-01-02T03:04:05Z"
)

// TestMakeImage builds the image as users do, with make image, then opens
// the tarball as docker load would and checks what a container of it runs:
// its config, its files, and the binary from its layer.
func TestMakeImage(t *testing.T) {
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "vigil-image.tar")
	cmd := maketest.Command(root, "image",
		"IMAGE_ARCH="+runtime.GOARCH, "IMAGE_BIN="+filepath.Join(dir, "build", "vigil"), "IMAGE="+tarPath,
		"VERSION="+version, "COMMIT="+revision, "DATE="+created)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if layers, err := img.Layers(); err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want the one on an empty base", len(layers), err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want the nonroot 65532:65532", c.User)
	}
	if want := []string{"/usr/local/bin/vigil", "serve", "--addr", "0.0.0.0:8080"}; !slices.Equal(c.Entrypoint, want) || len(c.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q, want entrypoint %q and no cmd", c.Entrypoint, c.Cmd, want)
	}
	if c.WorkingDir != "/data" {
		t.Errorf("working directory %q, want /data, where serve's default ./vigil-data lands in the volume", c.WorkingDir)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 8080/tcp", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("volumes %v, want /data", c.Volumes)
	}
	for k, want := range map[string]string{
		image.LabelVersion:  version,
		image.LabelRevision: revision,
		image.LabelSource:   "https://github.com/vigil-dev/vigil",
		image.LabelCreated:  created,
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if got := cf.Created.UTC().Format("2006-01-02T15:04:05Z"); got != created {
		t.Errorf("created %s, want the commit's time %s", got, created)
	}

	files := layerFiles(t, img)
	for name, want := range map[string]struct {
		mode int64
		uid  int
	}{
		"usr/local/bin/vigil":               {0o755, 0},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0},
		"data":                              {0o755, 65532},
		"tmp":                               {0o1777, 0},
	} {
		h, ok := files[name]
		if !ok {
			t.Errorf("%s missing from the layer", name)
			continue
		}
		if h.Mode != want.mode || h.Uid != want.uid {
			t.Errorf("%s: mode %o uid %d, want mode %o uid %d", name, h.Mode, h.Uid, want.mode, want.uid)
		}
	}
	for _, shell := range []string{"bin/sh", "bin/bash", "bin/busybox"} {
		if _, ok := files[shell]; ok {
			t.Errorf("%s in the image: it should have no shell", shell)
		}
	}
	hostCerts, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"].data, hostCerts) {
		t.Error("the image's CA bundle differs from the build machine's")
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd has no nonroot user:\n%s", files["etc/passwd"].data)
	}

	bin := filepath.Join(dir, "vigil-from-layer")
	if err := os.WriteFile(bin, files["usr/local/bin/vigil"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("binary built with CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	// The binary runs with nothing from the build machine's environment,
	// and the image's entrypoint and arguments are flags serve accepts.
	// The static build serves, its SQLite store and all: the driver is pure
	// Go, or this would fail without cgo.
	vigiltest.Start(t, bin, []string{"VIGIL_ADMIN_TOKEN=image-test-admin-token-0123456789"}, "--data", filepath.Join(dir, "store"))

	help := runVigil(t, bin, "--help")
	if !strings.Contains(help, "serve") {
		t.Errorf("vigil --help names no serve command:\n%s", help)
	}
	runVigil(t, bin, append(slices.Clone(c.Entrypoint[1:]), "--help")...)
	// make image stamps the binary through the linker flags; -trimpath
	// keeps them out of the build information, so vigil version is asked.
	out := runVigil(t, bin, "version")
	for _, want := range []string{version, revision, created} {
		if !strings.Contains(out, want) {
			t.Errorf("vigil version printed no %s:\n%s", want, out)
		}
	}
}

// runVigil runs bin with none of the build machine's environment, as in
// the image, and returns what it printed.
func runVigil(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("vigil %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type file struct {
	*tar.Header
	data []byte
}

// layerFiles reads the image's filesystem as a container would see it.
func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = file{h, data}
	}
}

// TestBuildRefusesUnfitBinaries: a binary that could not run in the image
// is refused when the image is built, not when a container starts.
func TestBuildRefusesUnfitBinaries(t *testing.T) {
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  image.Config
		want string
	}{
		{"dynamic", image.Config{Binary: "/bin/true", Arch: runtime.GOARCH, Version: "v1"}, "dynamically linked; build it with CGO_ENABLED=0"},
		{"other arch", image.Config{Binary: self, Arch: other, Version: "v1"}, "(" + other + ")"},
		{"unknown arch", image.Config{Binary: self, Arch: "riscv64", Version: "v1"}, `architecture "riscv64": want amd64 or arm64`},
		{"not ELF", image.Config{Binary: "image.go", Arch: runtime.GOARCH, Version: "v1"}, "not an ELF executable"},
		{"missing", image.Config{Binary: "no-such-binary", Arch: runtime.GOARCH, Version: "v1"}, "read binary"},
		{"no version", image.Config{Binary: self, Arch: runtime.GOARCH}, "Version is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := image.Build(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
