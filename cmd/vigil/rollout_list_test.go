package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// TestRolloutListPages: `vigil rollout list` follows the API's pages to
// the last, filters by state, and says which parameter is wrong.
func TestRolloutListPages(t *testing.T) {
	url := startController(t)
	conn := []string{"--server", url, "--token", cliToken}
	c, err := client.New(url, cliToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"alpha", "bravo", "charlie"} {
		f := flag.Flag{Key: key, Control: "off", Treatment: "on", Enabled: true,
			Variants: map[string]json.RawMessage{"on": json.RawMessage("true"), "off": json.RawMessage("false")}}
		if _, err := c.PutFlag(ctx, f, 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"rollout", "start", "alpha"}, {"rollout", "start", "bravo"}, {"rollout", "start", "charlie"},
		{"rollout", "start", "checkout"}, {"rollout", "pause", "bravo"}, {"rollout", "abort", "charlie"},
	} {
		if out, err := vigil(t, append(args, conn...)...); err != nil {
			t.Fatalf("vigil %v: %v %s", args, err, out)
		}
	}

	out, err := vigil(t, append([]string{"rollout", "list", "--page-size", "1"}, conn...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"alpha progressing 1% 1/6", "bravo paused 1% 1/6", "charlie aborted 0% 1/6", "checkout progressing 1% 1/6"}
	if len(lines) != 1+len(want) {
		t.Fatalf("rollout list --page-size 1:\n%s\nwant a header and %d rollouts", out, len(want))
	}
	for i, w := range want {
		if got := strings.Join(strings.Fields(lines[i+1])[:4], " "); got != w {
			t.Errorf("line %d: %q, want %q", i+1, got, w)
		}
	}

	out, err = vigil(t, append([]string{"rollout", "list", "--state", "paused,aborted", "--page-size", "1", "-o", "json"}, conn...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list runner.RolloutList[runner.Summary]
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if len(list.Rollouts) != 2 || list.Rollouts[0].Key != "bravo" || list.Rollouts[1].Phase != rollout.Aborted || list.Continue != "" {
		t.Errorf("--state paused,aborted -o json: %s", out)
	}
	if strings.Contains(out, `"history"`) {
		t.Errorf("-o json lists histories: %s", out)
	}

	runRolloutCLI(t, conn, []rolloutCLICase{
		{[]string{"rollout", "list", "--state", "done"}, `"done" is not a state; want one or more of pending, progressing, paused, promoted, rolled_back, aborted`, true, 0},
		{[]string{"rollout", "list", "--page-size", "1001"}, "--page-size 1001: want 1 to 1000", true, 0},
	})
}
