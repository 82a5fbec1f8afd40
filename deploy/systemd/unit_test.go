// Package systemd_test checks vigil.service, the unit docs/deploy.md
// installs: systemd-analyze verify accepts it, its ExecStart is a command
// line serve accepts, and the document installs what it names.
package systemd_test

import (
	"bufio"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/deploy/internal/doc"
	"github.com/vigil-dev/vigil/deploy/internal/maketest"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

var root, _ = filepath.Abs("../..")

// unitKeys reads the [Service] section of a unit file: each key's values.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	var section string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not KEY=VALUE", path, line)
			}
			keys[k] = append(keys[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// verify runs systemd-analyze verify on unit in a root directory that
// holds it, systemd's own units, and bin where ExecStart runs it from, and
// returns what it reported.
func verify(t *testing.T, unit []byte, execPath, bin string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"etc/systemd/system", "usr/lib/systemd", filepath.Dir(execPath[1:])} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// cp -a keeps the symbolic links systemd's unit directory is full of.
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(dir, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy systemd's units: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", bin, filepath.Join(dir, execPath[1:])).CombinedOutput(); err != nil {
		t.Fatalf("copy vigil: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/systemd/system/vigil.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--root="+dir, "vigil.service").CombinedOutput()
	return string(out), err
}

func TestUnit(t *testing.T) {
	keys := unitKeys(t, "vigil.service")
	if len(keys["ExecStart"]) != 1 {
		t.Fatalf("ExecStart %q, want one", keys["ExecStart"])
	}
	argv := strings.Fields(keys["ExecStart"][0])
	// Build builds, when make test has not, in the working directory's
	// module, which must be the root's: this one resolves other versions.
	t.Chdir(root)
	bin := vigiltest.Build(t)

	unit, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "vigil.service"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := verify(t, unit, argv[0], bin); err != nil || out != "" {
		t.Errorf("systemd-analyze verify vigil.service: %v\n%s", err, out)
	}
	// The check sees a mistake, which systemd itself would only log.
	typo := strings.Replace(string(unit), "Restart=", "Restrat=", 1)
	if out, _ := verify(t, []byte(typo), argv[0], bin); !strings.Contains(out, "Unknown key 'Restrat'") {
		t.Errorf("systemd-analyze verify passed a unit with Restrat=: %s", out)
	}

	// ExecStart is a command line serve accepts.
	if out, err := exec.Command(bin, append(argv[1:], "--help")...).CombinedOutput(); err != nil {
		t.Errorf("%s --help: %v\n%s", strings.Join(argv, " "), err, out)
	}

	// docs/deploy.md installs the unit, the binary where ExecStart runs
	// it, and the environment file the unit reads, then asks the address
	// serve listens on.
	cmds, err := doc.Commands(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	var installed, written []string
	var curled []string
	for _, c := range cmds {
		switch c.Name() {
		case "install":
			if n := len(c.Args); n >= 3 && !slices.Contains(c.Args, "-d") {
				if src := c.Args[n-2]; src != "/dev/null" && !inTreeOrMade(t, root, src) {
					t.Errorf("%v: %s is neither in the tree nor what make image builds", c, src)
				}
				installed = append(installed, c.Args[n-1])
			}
		case "tee":
			written = append(written, c.Args[len(c.Args)-1])
		case "curl":
			curled = append(curled, c.Args[len(c.Args)-1])
		}
	}
	for _, want := range []string{argv[0], "/etc/systemd/system/vigil.service"} {
		if !slices.Contains(installed, want) {
			t.Errorf("docs/deploy.md installs %q, not %s", installed, want)
		}
	}
	for _, env := range keys["EnvironmentFile"] {
		if !slices.Contains(written, strings.TrimPrefix(env, "-")) {
			t.Errorf("docs/deploy.md writes %q, not the unit's EnvironmentFile %s", written, env)
		}
	}
	i := slices.Index(argv, "--addr")
	if i < 0 || i+1 == len(argv) {
		t.Fatalf("ExecStart %q sets no --addr", argv)
	}
	_, port, _ := strings.Cut(argv[i+1], ":")
	if len(curled) != 1 {
		t.Fatalf("docs/deploy.md curls %q, want the unit's /readyz", curled)
	}
	if u, err := url.Parse(curled[0]); err != nil || u.Port() != port || u.Path != "/readyz" {
		t.Errorf("docs/deploy.md curls %s, want /readyz on the unit's port %s", curled[0], port)
	}
}

// inTreeOrMade reports whether path, relative to the repository's root, is a
// file of the tree or what `make image` writes: a test must not depend on
// another test having run make image first.
func inTreeOrMade(t *testing.T, root, path string) bool {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, path)); err == nil {
		return true
	}
	dry, err := maketest.Command(root, "-n", "image").Output()
	if err != nil {
		t.Fatalf("make -n image: %v", err)
	}
	return strings.Contains(string(dry), "-o "+path+" ")
}
