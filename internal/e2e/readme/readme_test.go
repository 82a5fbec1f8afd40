// Package readme runs every command README.md shows, so the README cannot
// drift from what Vigil does.
package readme

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/testenv/pgtest"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// root is the repository, found before TestCommands changes directory.
var root, _ = filepath.Abs("../../..")

// block is one fenced code block of the README.
type block struct {
	lang  string
	lines []string
}

// part is a fenced block of the README or, when block is nil, an inline
// code span of its prose, in the order they appear.
type part struct {
	block *block
	span  string
}

var inlineCode = regexp.MustCompile("`([^`]+)`")

func readmeParts(t *testing.T) []part {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		parts []part
		cur   *block
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && line == "```":
			parts = append(parts, part{block: cur})
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		default:
			for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
				parts = append(parts, part{span: m[1]})
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return parts
}

func readmeBlocks(t *testing.T) []block {
	t.Helper()
	var blocks []block
	for _, p := range readmeParts(t) {
		if p.block != nil {
			blocks = append(blocks, *p.block)
		}
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

// TestCommands runs every command of the README in order: each line of its
// shell blocks, and each command its prose shows in inline code (such as
// `vigil demo --help`, `vigil rollout status new-checkout -w` and the
// by-hand rollout commands), in a temporary directory holding the README's
// flags file, with the vigil binary built from this tree. Servers it starts
// listen on free loopback ports; the README's example addresses of
// Prometheus and PostgreSQL are replaced by real servers the test starts.
func TestCommands(t *testing.T) {
	parts := readmeParts(t)
	yamls := blocksOf(readmeBlocks(t), "yaml")
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
	r := &runner{t: t, bin: bin, dir: dir, idle: idle, env: map[string]string{}, ran: map[string]bool{}, replace: map[string]string{
		"http://prometheus:9090":    prom.URL,
		"postgres://vigil@db/vigil": pgtest.Database(t),
	}}
	var shell int
	for _, p := range parts {
		switch {
		case p.block != nil && p.block.lang == "sh":
			for _, line := range p.block.lines {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				shell++
				r.shell(line)
			}
		case p.block == nil:
			r.prose(p.span)
		}
	}
	if shell < 10 {
		t.Fatalf("ran %d shell commands; the README's shell blocks were not found", shell)
	}
	// What the commands should have left behind, and the prose commands
	// the README must keep showing.
	for _, f := range []string{"dashboards/vigil-flag-new-checkout.json", "vigil-rules.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("README commands did not produce %s: %v", f, err)
		}
	}
	for _, c := range []string{"make demo", "make test", "vigil demo --help", "vigil rollout status new-checkout -w", "promtool check rules"} {
		if !r.ran[c] {
			t.Errorf("the README no longer shows %q", c)
		}
	}
}

// runner runs the README's commands for TestCommands.
type runner struct {
	t    *testing.T
	bin  string
	dir  string
	idle *httptest.Server
	// env is what the README's export lines set; replace maps the
	// README's example addresses to the test's servers.
	env     map[string]string
	replace map[string]string
	// ran holds the commands run so far, and helpText `vigil demo --help`.
	ran      map[string]bool
	helpText string
}

func (r *runner) expand(line string) string {
	for from, to := range r.replace {
		line = strings.ReplaceAll(line, from, to)
	}
	return line
}

// vigil runs the vigil binary with the README's environment and returns
// its output, failing the test if it fails.
func (r *runner) vigil(args ...string) string {
	r.t.Helper()
	return r.vigilExit(0, args...)
}

// vigilExit is vigil for a command that must end with exit code code.
func (r *runner) vigilExit(code int, args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), envList(r.env)...)
	out, err := cmd.CombinedOutput()
	if got := exitCode(r.t, err); got != code {
		r.t.Fatalf("vigil %s: exit code %d (%v), want %d\n%s", strings.Join(args, " "), got, err, code, out)
	}
	r.t.Logf("%s", out)
	return string(out)
}

// exitCode is the exit code of a command that ended with err.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// rolloutRunning is the exit code of `vigil rollout status` for a rollout
// still progressing, as the README's is when it shows the command
// (docs/cli.md).
const rolloutRunning = 6

// shell runs one line of a shell block.
func (r *runner) shell(line string) {
	t := r.t
	t.Helper()
	line = r.expand(line)
	r.ran[line] = true
	t.Logf("$ %s", line)
	switch {
	case strings.HasPrefix(line, "make "):
		r.make(strings.TrimPrefix(line, "make "))
	case strings.HasPrefix(line, "export "):
		for _, kv := range strings.Fields(strings.TrimPrefix(line, "export ")) {
			k, v, _ := strings.Cut(kv, "=")
			r.env[k] = os.Expand(v, func(name string) string { return r.env[name] })
		}
	case strings.HasPrefix(line, "vigil serve"):
		background := strings.HasSuffix(line, "&")
		args := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(line, "vigil serve"), "&"))
		addr := ""
		args = dropFlag(args, "--addr", &addr)
		if !hasFlag(args, "--data") && !hasFlag(args, "--database") {
			// Another server of the test already holds ./vigil-data,
			// which one process may use at a time.
			args = append(args, "--data", filepath.Join(r.dir, fmt.Sprintf("data-%d", len(r.ran))))
		}
		p := vigiltest.Start(t, r.bin, envList(r.env), args...)
		if background {
			if addr != "" {
				r.replace["http://"+addr] = p.URL
				for k, v := range r.env {
					r.env[k] = strings.ReplaceAll(v, "http://"+addr, p.URL)
				}
			}
			return
		}
		if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(15 * time.Second); err != nil {
			t.Fatalf("%s: did not stop cleanly: %v\n%s", line, err, p.Log())
		}
	case strings.HasPrefix(line, "vigil rollout status "):
		// The rollout the README just started is progressing.
		r.vigilExit(rolloutRunning, strings.Fields(strings.TrimPrefix(line, "vigil "))...)
	case strings.HasPrefix(line, "vigil "):
		r.vigil(strings.Fields(os.Expand(strings.TrimPrefix(line, "vigil "), func(name string) string { return r.env[name] }))...)
	default:
		t.Fatalf("the README shows a command this test does not know how to run: %q", line)
	}
}

// make checks a make target the README shows. Neither runs here: `make
// test` runs this very test, so it cannot run inside it (CI runs it through
// .ci/run), and cmd/vigil's TestDemo, which `make test` runs, runs the
// `vigil demo` that `make demo` builds and runs; running it here too would
// double the demo's time in `make test`. What is checked is that each
// target still runs what those tests cover.
func (r *runner) make(target string) {
	t := r.t
	t.Helper()
	cmd := exec.Command("make", "-n", "--no-print-directory", target)
	cmd.Dir = root
	// Under make test this runs inside make, whose variables would turn
	// the dry run into a sub-make's (directory lines, a jobserver).
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("make -n %s: %v\n%s", target, err, out)
	}
	var want []string
	switch target {
	case "install":
		r.install()
		return
	case "demo":
		// Exactly: build the binary (with its version), run `vigil demo`
		// with no flags.
		if got := strings.Fields(ldflags.ReplaceAllString(out, "")); strings.Join(got, " ") != "go build -o bin/vigil ./cmd/vigil bin/vigil demo" {
			t.Errorf("make demo runs %q, want the build and `bin/vigil demo`, which cmd/vigil TestDemo runs", out)
		}
		return
	case "test":
		want = []string{
			"npm test",                    // the TypeScript SDK
			"go test -race -count=1",      // every Go module, internal/e2e/readme too
			"-run 'TestDemo' ./cmd/vigil", // the demo, as `make demo` runs it
			"-run 'TestEndToEnd|TestKillNine' ./controller/runner",
		}
	default:
		t.Fatalf("the README shows make %s, which this test does not know", target)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("make %s no longer runs %q:\n%s", target, w, out)
		}
	}
}

// commandWords are the first words of inline code the prose shows that are
// commands; any such span must be one the test knows how to run.
var commandWords = map[string]bool{"vigil": true, "make": true, "promtool": true, "go": true, "npm": true, "node": true, "prometheus": true, "curl": true}

// prose runs the command an inline code span of the prose shows, if it
// shows one.
func (r *runner) prose(span string) {
	t := r.t
	t.Helper()
	first, _, _ := strings.Cut(span, " ")
	byHand := slices.Contains(rollout.Commands, rollout.CommandKind(span))
	if !commandWords[first] && !byHand && !strings.HasPrefix(span, "--") && !strings.HasPrefix(span, ".ci/") {
		return // a path, a metric, a flag key
	}
	if r.ran[span] && first == "make" {
		return // a target the shell blocks showed, checked there
	}
	t.Logf("(prose) %s", span)
	r.ran[span] = true
	switch {
	case span == "make demo" || span == "make test":
		r.make(strings.TrimPrefix(span, "make "))
	case span == ".ci/run":
		r.ciRun()
	case strings.HasPrefix(span, "go install "):
		r.goInstall(strings.TrimPrefix(span, "go install "))
	case span == "vigil demo --help":
		r.helpText = r.vigil("demo", "--help")
		for _, want := range []string{"Usage:\n  vigil demo [flags]", "--interval", "--step-duration", "--rate", "--users", "--timeout", "--dir", "--keep-running"} {
			if !strings.Contains(r.helpText, want) {
				t.Errorf("vigil demo --help lacks %q", want)
			}
		}
	case span == "--keep-running":
		// What it does is cmd/vigil's TestDemoAgainstPrometheus; here,
		// that the flag the README names exists.
		if !strings.Contains(r.helpText, "--keep-running") {
			t.Errorf("the README names --keep-running, which vigil demo --help (run before) does not list")
		}
	case strings.HasPrefix(span, "--") && !strings.Contains(span, " "):
		// A flag of serve the prose names: it must exist.
		if help := r.vigil("serve", "--help"); !strings.Contains(help, "  "+span+" ") {
			t.Errorf("the README names %s, which vigil serve --help does not list", span)
		}
	case span == "vigil rollout status new-checkout -w":
		r.watch(strings.Fields(strings.TrimPrefix(span, "vigil "))...)
	case byHand:
		r.byHand(rollout.CommandKind(span))
	case strings.HasPrefix(span, "--scrape-target "):
		r.scrapeTarget()
	case span == "promtool check rules":
		// On the rule file the README's alerts command wrote just before.
		out, err := exec.Command("promtool", "check", "rules", filepath.Join(r.dir, "vigil-rules.yaml")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool check rules vigil-rules.yaml: %v\n%s", err, out)
		}
	default:
		t.Fatalf("the README's prose shows a command this test does not know how to run: %q", span)
	}
}

// install runs `make install` for real, into a temporary GOBIN, and checks
// that the vigil it installed prints its version and commit.
func (r *runner) install() {
	t := r.t
	t.Helper()
	gobin := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "install")
	cmd.Dir = root
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" && name != "GOBIN" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "vigil"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "vigil ") || strings.Contains(string(out), "commit unknown") {
		t.Fatalf("the vigil make install wrote: version %v: %s", err, out)
	}
}

// goInstall checks `go install PATH@latest`, which needs a published
// release and so cannot run here: PATH must be this module's command.
func (r *runner) goInstall(arg string) {
	t := r.t
	t.Helper()
	pkg, version, _ := strings.Cut(arg, "@")
	if version != "latest" {
		t.Errorf("go install %s: want @latest", arg)
	}
	cmd := exec.Command("go", "list", "-f", "{{.Name}} {{.ImportPath}}", pkg)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "main "+pkg {
		t.Errorf("go install %s: %s is not this module's command: %v %s", arg, pkg, err, out)
	}
}

// ciRun checks .ci/run, which cannot run here: it installs packages and then
// runs `make test`, which runs this test. CI runs it on a fresh machine.
func (r *runner) ciRun() {
	path := filepath.Join(root, ".ci", "run")
	st, err := os.Stat(path)
	if err != nil || st.Mode()&0o111 == 0 {
		r.t.Fatalf(".ci/run: not an executable file: %v", err)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if !slices.Contains(lines, "make lint") || lines[len(lines)-1] != "make test" {
		r.t.Errorf(".ci/run does not end by running make lint and make test")
	}
}

// watch runs `vigil rollout status KEY -w`, which follows the rollout until
// it finishes or Ctrl-C: it must draw the progressing rollout, then stop on
// SIGINT with the exit code of a rollout still progressing.
func (r *runner) watch(args ...string) {
	t := r.t
	t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), envList(r.env)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	drawn := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "new-checkout  PROGRESSING") {
				once = true
				close(drawn)
			}
		}
	}()
	select {
	case <-drawn:
	case <-copied:
		cmd.Wait()
		t.Fatalf("vigil %s exited without drawing the progressing rollout:\n%s", strings.Join(args, " "), out.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-copied
		cmd.Wait()
		t.Fatalf("vigil %s drew nothing in 30s:\n%s", strings.Join(args, " "), out.String())
	}
	// It follows: still running after drawing, until interrupted.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-copied; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if code := exitCode(t, err); code != rolloutRunning {
			t.Errorf("vigil %s after SIGINT: exit code %d (%v), want %d for a rollout still progressing\n%s", strings.Join(args, " "), code, err, rolloutRunning, out.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("vigil %s did not stop on SIGINT", strings.Join(args, " "))
	}
	if !strings.Contains(out.String(), "◉ 1%") {
		t.Errorf("vigil %s did not draw the progress at 1%%:\n%s", strings.Join(args, " "), out.String())
	}
}

// byHand runs one of the rollout commands the README says take over by
// hand, on the rollout the README started, and checks the state it leaves.
func (r *runner) byHand(kind rollout.CommandKind) {
	want := map[rollout.CommandKind]string{
		rollout.Pause:    "rollout new-checkout is paused at 1%",
		rollout.Resume:   "rollout new-checkout is progressing at 1%",
		rollout.Promote:  "rollout new-checkout is promoted at 100%",
		rollout.Rollback: "rollout new-checkout is rolled_back at 0%",
		rollout.Abort:    "rollout new-checkout is aborted at 0%",
	}[kind]
	if want == "" {
		r.t.Fatalf("the README names rollout command %q, which this test does not know", kind)
	}
	if kind == rollout.Abort {
		// Only an unfinished rollout can be aborted, and the commands
		// before finished it: start it again, as the README does.
		r.vigil("rollout", "start", "new-checkout")
	}
	if out := r.vigil("rollout", string(kind), "new-checkout"); !strings.Contains(out, want) {
		r.t.Errorf("vigil rollout %s new-checkout: %q, want %q", kind, out, want)
	}
}

// scrapeTarget runs `vigil serve --scrape-target host:port` with the test's
// idle target and waits until its embedded store has scraped it, as its
// Prometheus API shows. The scrape interval is shortened so as not to wait
// the default 15s.
func (r *runner) scrapeTarget() {
	t := r.t
	t.Helper()
	target := strings.TrimPrefix(r.idle.URL, "http://")
	p := vigiltest.Start(t, r.bin, envList(r.env), "--data", filepath.Join(r.dir, "scrape-data"), "--scrape-target", target, "--scrape-interval", "500ms")
	query := p.URL + "/api/v1/query?query=" + url.QueryEscape(fmt.Sprintf(`up{instance=%q}`, target))
	poll.Until(t, 30*time.Second, "vigil serve --scrape-target "+target+" to scrape it", func() error {
		req, err := http.NewRequest(http.MethodGet, query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+r.env["VIGIL_ADMIN_TOKEN"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Data struct {
				Result []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s, %v", query, resp.Status, err)
		}
		if len(res.Data.Result) == 1 && len(res.Data.Result[0].Value) == 2 && res.Data.Result[0].Value[1] == "1" {
			return nil
		}
		return fmt.Errorf("up is %v\n%s", res.Data.Result, p.Log())
	})
	if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(15 * time.Second); err != nil {
		t.Fatalf("vigil serve --scrape-target: did not stop cleanly: %v\n%s", err, p.Log())
	}
}

func envList(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// ldflags matches the version flags make passes to go build.
var ldflags = regexp.MustCompile(`-ldflags '[^']*' `)

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
