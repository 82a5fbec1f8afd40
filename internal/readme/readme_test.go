// Package readme runs every command README.md shows, so the README cannot
// drift from what Vigil does.
package readme

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/pgtest"
	"github.com/vigil-dev/vigil/internal/promtest"
	"github.com/vigil-dev/vigil/internal/vigiltest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// root is the repository, found before TestCommands changes directory.
var root, _ = filepath.Abs("../..")

// block is one fenced code block of the README.
type block struct {
	lang  string
	lines []string
}

func readmeBlocks(t *testing.T) []block {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks []block
		cur    *block
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

func blocksOf(blocks []block, lang string) []block {
	var out []block
	for _, b := range blocks {
		if b.lang == lang {
			out = append(out, b)
		}
	}
	return out
}

// TestGoExampleCompiles checks that the README's Go snippet is, line for
// line, the body of sdk/examples/readme, which `make test` compiles and vets.
func TestGoExampleCompiles(t *testing.T) {
	gos := blocksOf(readmeBlocks(t), "go")
	if len(gos) != 1 {
		t.Fatalf("%d Go blocks in the README, want 1", len(gos))
	}
	src, err := os.ReadFile(filepath.Join(root, "sdk/examples/readme/main.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(src), "// README:begin\n")
	body, _, ok := strings.Cut(rest, "\t// README:end")
	if !ok {
		t.Fatal("markers missing in sdk/examples/readme/main.go")
	}
	var want []string
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		want = append(want, strings.TrimPrefix(l, "\t"))
	}
	if got := strings.Join(gos[0].lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("README Go block differs from sdk/examples/readme/main.go:\n--- README\n%s\n--- example\n%s", got, strings.Join(want, "\n"))
	}
}

// TestCommands runs every shell command of the README in order, in a
// temporary directory holding the README's flags file, with the vigil
// binary on PATH. Servers it starts listen on free loopback ports; the
// README's example addresses of Prometheus and PostgreSQL are replaced by
// real servers the test starts.
func TestCommands(t *testing.T) {
	blocks := readmeBlocks(t)
	yamls := blocksOf(blocks, "yaml")
	if len(yamls) != 1 {
		t.Fatalf("%d YAML blocks in the README, want 1", len(yamls))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flags.yaml"), []byte(strings.Join(yamls[0].lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := vigiltest.Build(t)
	// Commands with relative paths (./vigil-data, ./dashboards) run in dir,
	// and so do the servers the test starts.
	t.Chdir(dir)

	idle := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(idle.Close)
	prom := promtest.Start(t, promtest.Options{Targets: []string{idle.URL + "/metrics"}})
	replace := map[string]string{
		"http://prometheus:9090":    prom.URL,
		"postgres://vigil@db/vigil": pgtest.Database(t),
	}
	env := map[string]string{}
	var ran int
	for _, b := range blocksOf(blocks, "sh") {
		for _, line := range b.lines {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			for from, to := range replace {
				line = strings.ReplaceAll(line, from, to)
			}
			ran++
			t.Logf("$ %s", line)
			switch {
			case strings.HasPrefix(line, "make "):
				// make test is what CI runs and make demo is TestDemo;
				// here the targets must exist and expand.
				cmd := exec.Command("make", "-n", strings.TrimPrefix(line, "make "))
				cmd.Dir = root
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", line, err, out)
				}
			case strings.HasPrefix(line, "export "):
				for _, kv := range strings.Fields(strings.TrimPrefix(line, "export ")) {
					k, v, _ := strings.Cut(kv, "=")
					env[k] = os.Expand(v, func(name string) string { return env[name] })
				}
			case strings.HasPrefix(line, "vigil serve"):
				background := strings.HasSuffix(line, "&")
				args := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(line, "vigil serve"), "&"))
				addr := ""
				args = dropFlag(args, "--addr", &addr)
				if !hasFlag(args, "--data") && !hasFlag(args, "--metrics-dir") {
					// Another server of the test already holds
					// ./vigil-data's metric store.
					args = append(args, "--metrics-dir", filepath.Join(dir, fmt.Sprintf("metrics-%d", ran)))
				}
				p := vigiltest.Start(t, bin, envList(env), args...)
				if background {
					if addr != "" {
						replace["http://"+addr] = p.URL
						for k, v := range env {
							env[k] = strings.ReplaceAll(v, "http://"+addr, p.URL)
						}
					}
					continue
				}
				if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
				if err := p.Wait(15 * time.Second); err != nil {
					t.Fatalf("%s: did not stop cleanly: %v\n%s", line, err, p.Log())
				}
			case strings.HasPrefix(line, "vigil "):
				for from, to := range replace {
					line = strings.ReplaceAll(line, from, to)
				}
				args := strings.Fields(os.Expand(strings.TrimPrefix(line, "vigil "), func(name string) string { return env[name] }))
				cmd := exec.Command(bin, args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), envList(env)...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", line, err, out)
				}
				t.Logf("%s", out)
			default:
				t.Fatalf("the README shows a command this test does not know how to run: %q", line)
			}
		}
	}
	if ran < 10 {
		t.Fatalf("ran %d commands; the README's shell blocks were not found", ran)
	}
	// What the commands should have left behind.
	for _, f := range []string{"dashboards/vigil-flag-new-checkout.json", "vigil-rules.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("README commands did not produce %s: %v", f, err)
		}
	}
}

func envList(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

var flagValue = regexp.MustCompile(`^--[a-z-]+$`)

// dropFlag removes "--name value" from args and stores the value.
func dropFlag(args []string, name string, value *string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == name && i+1 < len(args) && !flagValue.MatchString(args[i+1]) {
			*value = args[i+1]
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
