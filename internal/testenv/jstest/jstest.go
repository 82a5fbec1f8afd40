// Package jstest prepares the TypeScript SDK (sdk/js) for Go tests that run
// it with node: the cross-language tests and the OFREP verification. `make
// test` installs and builds sdk/js before the Go tests; a bare `go test`
// does it here, once, under a file lock, so that test packages running in
// parallel never run npm in the same directory at the same time.
package jstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dir returns the absolute path of sdk/js.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("jstest: cannot locate the source tree")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "sdk", "js")
}

// Modules makes sure node is installed and sdk/js's dependencies are, from
// its lock file, and returns sdk/js.
func Modules(t testing.TB) string {
	t.Helper()
	dir := Dir(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: this test needs Node.js 20 and npm (apt-get install nodejs npm)")
	}
	unlock := lock(t, dir)
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err != nil {
		npm(t, dir, "ci", "--no-audit", "--no-fund")
	}
	return dir
}

// Built makes sure sdk/js is built from its current sources and returns its
// dist directory.
func Built(t testing.TB) string {
	t.Helper()
	dir := Modules(t)
	unlock := lock(t, dir)
	defer unlock()
	marker := filepath.Join(dir, "dist", "tools", "evaluate.js")
	if st, err := os.Stat(marker); err != nil || newerSources(t, dir, st.ModTime()) {
		npm(t, dir, "run", "build")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("npm run build in %s did not produce %s", dir, marker)
	}
	return filepath.Join(dir, "dist")
}

func npm(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("npm", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}

// lock takes an exclusive lock on sdk/js for npm, waiting up to five
// minutes for another test process to finish with it.
func lock(t testing.TB, dir string) func() {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, ".npm.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("lock %s: %v", dir, err)
	}
	// The kernel wakes a blocked flock when the holder lets go; the timer
	// only bounds a holder that never does.
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if err != nil {
			f.Close()
			t.Fatalf("lock %s: %v", dir, err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("lock %s: still held by another test process after 5 minutes", dir)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

func newerSources(t testing.TB, dir string, built time.Time) bool {
	t.Helper()
	newer := false
	for _, sub := range []string{"src", "tools", "test"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if info, err := d.Info(); err == nil && !d.IsDir() && info.ModTime().After(built) {
				newer = true
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
	}
	return newer
}
