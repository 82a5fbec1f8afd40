package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// TestEveryServeFlagFromEnv: each flag of `vigil serve` is set by its
// VIGIL_ variable, unless the command line gives it.
func TestEveryServeFlagFromEnv(t *testing.T) {
	fs := newServeCmd(serveOptions()...).Flags()
	env := map[string]string{}
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		v := f.DefValue
		if v == "" || v == "[]" {
			v = "x"
		}
		env[envName(f.Name)] = v
	})
	if n < 20 {
		t.Fatalf("serve has %d flags; the walk missed them", n)
	}
	if err := fs.Parse([]string{"--addr", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			t.Errorf("--%s was not set from %s", f.Name, envName(f.Name))
		}
		if !strings.Contains(f.Usage, "$"+envName(f.Name)) {
			t.Errorf("--%s does not name %s in its help", f.Name, envName(f.Name))
		}
	})
	if got := fs.Lookup("addr").Value.String(); got != "127.0.0.1:1" {
		t.Errorf("--addr %s: the environment overrode the command line", got)
	}
	err := flagsFromEnv(newServeCmd().Flags(), func(k string) (string, bool) { return "soon", k == "VIGIL_HEARTBEAT" })
	if err == nil || !strings.Contains(err.Error(), `VIGIL_HEARTBEAT="soon" (--heartbeat)`) {
		t.Errorf("a bad value: %v", err)
	}
}

// TestServeConfiguredByEnv runs `vigil serve` with no arguments, configured
// by the environment alone as in a container, logging JSON.
func TestServeConfiguredByEnv(t *testing.T) {
	bin := vigiltest.Build(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "VIGIL_ADDR="+addr, "VIGIL_DATA="+data, "VIGIL_LOG_FORMAT=json", "VIGIL_ADMIN_TOKEN="+testAdminToken)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	poll.Ready(t, 30*time.Second, "http://"+addr)
	if _, err := os.Stat(filepath.Join(data, "vigil.db")); err != nil {
		t.Errorf("VIGIL_DATA: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var listening bool
	for l := range lines {
		var rec struct {
			Level, Msg, Addr string
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
			t.Errorf("log line is not a JSON record: %q", l)
		}
		listening = listening || (rec.Msg == "vigil controller listening" && rec.Addr == addr)
	}
	if !listening {
		t.Error("no JSON record of listening on VIGIL_ADDR")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}
