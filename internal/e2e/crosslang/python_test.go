package crosslang

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// pythonRun runs the Python SDK's cross-language tool (sdk/python,
// vigil._crosslang) in mode over input and returns what it printed. The
// interpreter is $VIGIL_TEST_PYTHON, else sdk/python/.venv (make test
// makes it), else Debian's /usr/bin/python3 with the packages .ci/run
// installs; the SDK is read from its sources.
func pythonRun(t *testing.T, mode string, input []byte) []byte {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the source tree")
	}
	sdk := filepath.Join(filepath.Dir(file), "..", "..", "..", "sdk", "python")
	py := os.Getenv("VIGIL_TEST_PYTHON")
	for _, c := range []string{filepath.Join(sdk, ".venv", "bin", "python"), "/usr/bin/python3"} {
		if py != "" {
			break
		}
		if _, err := os.Stat(c); err == nil {
			py = c
		}
	}
	if py == "" {
		t.Fatal("no Python 3 interpreter: set VIGIL_TEST_PYTHON or apt-get install python3 python3-yaml")
	}
	path := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(py, "-m", "vigil._crosslang", mode, path)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(sdk, "src"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -m vigil._crosslang %s: %v\n%s", py, mode, err, stderr.String())
	}
	return stdout.Bytes()
}
