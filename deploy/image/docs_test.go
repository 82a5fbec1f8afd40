package image_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/deploy/image"
	"github.com/vigil-dev/vigil/deploy/internal/doc"
	"github.com/vigil-dev/vigil/deploy/internal/maketest"
)

// TestDockerfiles: the Dockerfile, and the one goreleaser builds the
// release's image with, build the image make image builds, so their
// entrypoint, user, port, volume and binary are the same. (No Docker daemon
// runs here to build them.)
func TestDockerfiles(t *testing.T) {
	for _, name := range []string{"Dockerfile", "deploy/goreleaser.Dockerfile"} {
		t.Run(name, func(t *testing.T) { checkDockerfile(t, name) })
	}
}

func checkDockerfile(t *testing.T, name string) {
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	// Instructions of the final stage, continuation lines joined.
	final := map[string][]string{}
	joined := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		instr, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch instr {
		case "", "#":
		case "FROM":
			final = map[string][]string{}
		default:
			final[instr] = append(final[instr], strings.TrimSpace(arg))
		}
	}
	var entrypoint []string
	if len(final["ENTRYPOINT"]) != 1 || json.Unmarshal([]byte(final["ENTRYPOINT"][0]), &entrypoint) != nil || !slices.Equal(entrypoint, image.Entrypoint) {
		t.Errorf("ENTRYPOINT %q, want %q in exec form", final["ENTRYPOINT"], image.Entrypoint)
	}
	for instr, want := range map[string]string{
		"USER":    "65532:65532",
		"EXPOSE":  image.Port,
		"VOLUME":  image.DataDir,
		"WORKDIR": image.DataDir,
	} {
		if !slices.Equal(final[instr], []string{want}) {
			t.Errorf("%s %q in the final stage, want %s", instr, final[instr], want)
		}
	}
	if !slices.ContainsFunc(final["COPY"], func(c string) bool { return strings.HasSuffix(c, " "+image.BinaryPath) }) {
		t.Errorf("final stage copies %q, not the binary to %s", final["COPY"], image.BinaryPath)
	}
	if name != "Dockerfile" {
		return // goreleaser built the binary
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "-X main.commit=", "-X main.date="} {
		if !strings.Contains(joined, want) {
			t.Errorf("Dockerfile builds vigil without %s", want)
		}
	}
}

// TestDocs checks the image commands of docs/deploy.md against what make
// image does: docker load reads the tarball it writes, and docker run names
// its tag, port and volume. (The make image command itself is what
// TestMakeImage runs.)
func TestDocs(t *testing.T) {
	cmds, err := doc.Commands(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	var makeArgs, load, run []string
	for _, c := range cmds {
		switch {
		case c.Name() == "make" && slices.Contains(c.Args, "image"):
			makeArgs = c.Args[1:]
		case c.Name() == "docker" && c.Args[1] == "load":
			load = c.Flag("-i")
		case c.Name() == "docker" && c.Args[1] == "run":
			run = c.Args
		}
	}
	if makeArgs == nil || len(load) != 1 || run == nil {
		t.Fatalf("docs/deploy.md: make image %q, docker load -i %q, docker run %q: want one of each", makeArgs, load, run)
	}
	// make -n prints the commands make image would run.
	dry, err := maketest.Command(root, append([]string{"-n"}, makeArgs...)...).Output()
	if err != nil {
		t.Fatalf("make -n %s: %v", strings.Join(makeArgs, " "), err)
	}
	if !strings.Contains(string(dry), " -o "+filepath.Join(root, load[0])+" ") {
		t.Errorf("docker load -i %s, but make image writes:\n%s", load[0], dry)
	}
	var version string
	for _, a := range makeArgs {
		if v, ok := strings.CutPrefix(a, "VERSION="); ok {
			version = v
		}
	}
	if tag := "vigil:" + version; version == "" || run[len(run)-1] != tag {
		t.Errorf("docker run %q, want the image make image tags %s last", run, tag)
	}
	port := strings.TrimSuffix(image.Port, "/tcp")
	for flag, want := range map[string]string{"-p": ":" + port, "-v": ":" + image.DataDir} {
		vals := (doc.Command{Args: run}).Flag(flag)
		if len(vals) != 1 || !strings.HasSuffix(vals[0], want) {
			t.Errorf("docker run %s %q, want one ending in %s", flag, vals, want)
		}
	}
}
