package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/testenv/servertest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

const testAdminToken = "flags-cli-admin-token-0123456789"

// startTestServer runs a controller in-process on a loopback port and
// returns its URL.
func startTestServer(t *testing.T) string {
	t.Helper()
	url, _ := servertest.Run(t, func(ctx context.Context) (*server.Server, error) {
		return server.New(ctx, server.Config{
			DataDir:    t.TempDir(),
			AdminToken: testAdminToken,
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	})
	return url
}

// runCLI runs the vigil command line in-process.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestFlagCommands(t *testing.T) {
	url := startTestServer(t)
	t.Setenv("VIGIL_SERVER", url)
	t.Setenv("VIGIL_TOKEN", testAdminToken)
	dir := t.TempDir()
	file := filepath.Join(dir, "flags.yaml")
	yaml := `flags:
  - key: new-checkout
    description: the new checkout
    variants: {on: true, off: false}
    control: off
    treatment: on
    enabled: true
    rollout: {percent: 5}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runCLI(t, stdin, args...)
		if err != nil {
			t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	if out := mustRun("", "apply", "-f", file, "--dry-run"); !strings.Contains(out, "would create new-checkout") {
		t.Fatalf("dry run: %s", out)
	}
	if out := mustRun("", "apply", "-f", file, "-m", "launch"); !strings.Contains(out, "created new-checkout") || !strings.Contains(out, "revision 1") {
		t.Fatalf("apply: %s", out)
	}
	if out := mustRun(strings.Replace(yaml, "percent: 5", "percent: 10", 1), "apply", "-f", "-"); !strings.Contains(out, "updated new-checkout") {
		t.Fatalf("apply from stdin: %s", out)
	}
	table := mustRun("", "get", "flags")
	if !strings.Contains(table, "KEY") || !strings.Contains(table, "new-checkout") || !strings.Contains(table, "10%") {
		t.Fatalf("table: %s", table)
	}
	var list server.FlagList
	if err := json.Unmarshal([]byte(mustRun("", "get", "flags", "-o", "json")), &list); err != nil || len(list.Flags) != 1 || list.Flags[0].Version != 2 {
		t.Fatalf("json: %+v %v", list, err)
	}
	// The YAML output is itself a valid flags file.
	if _, err := flag.Parse([]byte(mustRun("", "get", "flags", "-o", "yaml"))); err != nil {
		t.Fatalf("yaml output is not a flags file: %v", err)
	}
	if out := mustRun("", "get", "flag", "new-checkout"); !strings.Contains(out, "percent: 10") {
		t.Fatalf("get flag: %s", out)
	}
	// Every output of get is a file apply takes back, unchanged.
	for _, args := range [][]string{
		{"get", "flags", "-o", "json"}, {"get", "flags", "-o", "yaml"},
		{"get", "flag", "new-checkout", "-o", "json"}, {"get", "flag", "new-checkout"},
	} {
		if out := mustRun(mustRun("", args...), "apply", "-f", "-"); !strings.Contains(out, "0 changed, 1 unchanged") {
			t.Errorf("vigil %s | vigil apply -f -: %s", strings.Join(args, " "), out)
		}
	}
	audit := mustRun("", "audit", "--flag", "new-checkout")
	if !strings.Contains(audit, "update") || !strings.Contains(audit, "create") || !strings.Contains(audit, "launch") {
		t.Fatalf("audit: %s", audit)
	}
	// Tokens: create prints the secret once, and it works.
	secret := strings.TrimSpace(mustRun("", "token", "create", "--name", "checkout-svc", "--role", "reader"))
	if !strings.HasPrefix(secret, "vgl_") {
		t.Fatalf("token create printed %q", secret)
	}
	if out := mustRun("", "get", "flags", "--token", secret); !strings.Contains(out, "new-checkout") {
		t.Fatalf("reader token: %s", out)
	}
	if out := mustRun("", "token", "list"); !strings.Contains(out, "checkout-svc") || strings.Contains(out, secret) {
		t.Fatalf("token list: %s", out)
	}
	// The server's messages come through as errors.
	if _, err := runCLI(t, "", "delete", "flag", "new-checkout", "--token", secret); err == nil || !strings.Contains(err.Error(), "role reader") {
		t.Fatalf("reader delete: %v", err)
	}
	if _, err := runCLI(t, "", "delete", "flag", "new-checkout", "--if-version", "1"); err == nil || !strings.Contains(err.Error(), "version 2, not 1") {
		t.Fatalf("stale delete: %v", err)
	}
	mustRun("", "token", "revoke", "checkout-svc")
	if _, err := runCLI(t, "", "get", "flags", "--token", secret); err == nil || !strings.Contains(err.Error(), "invalid or revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	if out := mustRun("", "delete", "flag", "new-checkout"); !strings.Contains(out, "deleted new-checkout (version 3)") {
		t.Fatalf("delete: %s", out)
	}
	if _, err := runCLI(t, "", "get", "flag", "new-checkout"); err == nil || !strings.Contains(err.Error(), `flag "new-checkout" does not exist`) {
		t.Fatalf("get deleted: %v", err)
	}
	// A bad file is reported with its name and the field, before any call.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("flags:\n  - key: x\n    variants: {a: 1}\n    control: b\n"), 0o600)
	if _, err := runCLI(t, "", "apply", "-f", bad); err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "control") {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := runCLI(t, "", "get", "flags", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "table, json, yaml") {
		t.Fatalf("bad output: %v", err)
	}
}

// TestApplyChecksLocally: vigil apply refuses a bad file, custom metric
// queries, plan fields given as zero and a null percent included, with the
// file's name and the field, before it asks a server (none answers at the
// address given).
func TestApplyChecksLocally(t *testing.T) {
	t.Setenv("VIGIL_SERVER", "http://127.0.0.1:1")
	t.Setenv("VIGIL_TOKEN", testAdminToken)
	file := filepath.Join(t.TempDir(), "flags.yaml")
	yaml := `flags:
  - key: new-checkout
    variants: {on: true, off: false}
    control: off
    treatment: on
    rollout:
      percent: 0
      plan:
        metrics:
          - {name: conversion, direction: lower-is-worse, tolerance: 0.95, query: 'sum(rate(orders_total[{{window}}])'}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "", "apply", "-f", file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "rollout.plan.metrics[0].query") {
		t.Fatalf("apply of a bad query: %v", err)
	}
	zero := strings.Replace(yaml, "tolerance: 0.95, query: 'sum(rate(orders_total[{{window}}])'", "tolerance: 0, query: 'sum(rate(orders_total[{{window}}]))'", 1)
	if err := os.WriteFile(file, []byte(zero), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "", "apply", "-f", file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "flag new-checkout: rollout.plan.metrics[0].tolerance: 0 must be a positive ratio") {
		t.Fatalf("apply of a zero tolerance: %v", err)
	}
	// An empty value in YAML is null, which would be read as 0.
	null := strings.Replace(yaml, "percent: 0", "percent:", 1)
	if err := os.WriteFile(file, []byte(null), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "", "apply", "-f", file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "flag new-checkout: rollout.percent: null is not a value") {
		t.Fatalf("apply of a null percent: %v", err)
	}
}

// TestHelpEverywhere walks the whole command tree, so that a command added
// later is covered without a change here: every command prints its usage
// for --help and succeeds. In process, Execute returning nil is what makes
// main exit 0.
func TestHelpEverywhere(t *testing.T) {
	root := newRootCmd()
	// Execute adds cobra's help and completion commands itself; add them
	// before the walk so that their help is checked too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(root, nil)
	// A walk that found only the top would pass vacuously; these are some
	// commands known to sit a level or two down.
	seen := map[string]bool{}
	for _, p := range paths {
		seen[strings.Join(p, " ")] = true
	}
	for _, want := range []string{"serve", "get flags", "token create", "rollout start", "completion bash"} {
		if !seen[want] {
			t.Errorf("the walk did not reach vigil %s", want)
		}
	}
	for _, path := range paths {
		// A fresh tree each time: cobra keeps parsed flags on the commands.
		out, err := runCLI(t, "", append(path, "--help")...)
		name := strings.Join(append([]string{"vigil"}, path...), " ")
		if err != nil || !strings.Contains(out, "Usage:") || !strings.Contains(out, name) {
			t.Errorf("%s --help: %v\n%s", name, err, out)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db": "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":        "postgres://u@h/db",
		"mysql://h/db":             "mysql://h/db",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
