// Package maketest runs the repository's Makefile from tests.
package maketest

import (
	"os"
	"os/exec"
	"strings"
)

// Command is `make -C dir args...` as a person would run it: under make
// test, make's own variables in the environment would turn it into a
// sub-make of that run, with its flags and jobserver.
func Command(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", dir}, args...)...)
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}
