package crosslang

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/baggage"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// pinFlags are the flags of a service that evaluates "pinned" at percent.
func pinFlags(percent float64) []flag.Flag {
	onOff := map[string]json.RawMessage{"off": json.RawMessage("false"), "on": json.RawMessage("true")}
	return []flag.Flag{
		{Key: "pinned", Variants: onOff, Control: "off", Treatment: "on", Enabled: true, Tracked: true,
			Salt: "pin-salt", Rollout: &flag.Rollout{Percent: percent}},
		{Key: "other", Variants: onOff, Control: "off", Treatment: "on", Enabled: true, Tracked: true,
			Rollout: &flag.Rollout{Percent: 37.5}},
	}
}

func goClient(t *testing.T, flags []flag.Flag) *sdk.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flags.json")
	b, _ := json.Marshal(flag.File{Flags: flags})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type pinOutput struct {
	Served   []string `json:"served"`
	Outgoing []string `json:"outgoing"`
}

func nodePins(t *testing.T, flags []flag.Flag, units, incoming []string) pinOutput {
	t.Helper()
	script := tool(t, "pins.js")
	input, _ := json.Marshal(map[string]any{"flags": flags, "units": units, "incoming": incoming, "key": "pinned"})
	path := filepath.Join(t.TempDir(), "pins.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", script, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	var out pinOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("decode node output: %v", err)
	}
	if len(out.Served) != len(units) || len(out.Outgoing) != len(units) {
		t.Fatalf("node answered for %d and %d units, want %d", len(out.Served), len(out.Outgoing), len(units))
	}
	return out
}

// TestPinsAcrossGoAndTypeScript sends baggage pins both ways: the pinning
// service evaluates "pinned" at 100%, the receiving one at 0%, so every
// unit served "on" downstream was served by the pin.
func TestPinsAcrossGoAndTypeScript(t *testing.T) {
	var units []string
	for _, u := range crossUnits(600) {
		if u != "" { // no unit key, nothing to pin
			units = append(units, u)
		}
	}
	ctx := context.Background()

	// Go pins, TypeScript honours.
	up := goClient(t, pinFlags(100))
	headers := make([]string, len(units))
	for i, u := range units {
		sctx, scope := up.StartScope(ctx)
		up.Bool(sctx, "pinned", sdk.EvalContext{Key: u}, false)
		up.Bool(sctx, "other", sdk.EvalContext{Key: u}, false)
		headers[i] = baggage.FromContext(sctx).String()
		scope.End(nil)
	}
	fromGo := nodePins(t, pinFlags(0), units, headers)
	for i, u := range units {
		if fromGo.Served[i] != "on|pinned" {
			t.Fatalf("unit %q with Go's baggage %q: TypeScript served %s, want on|pinned", u, headers[i], fromGo.Served[i])
		}
	}

	// TypeScript pins, Go honours.
	fromTS := nodePins(t, pinFlags(100), units, make([]string, len(units)))
	down := goClient(t, pinFlags(0))
	for i, u := range units {
		b, err := baggage.Parse(fromTS.Outgoing[i])
		if err != nil {
			t.Fatalf("unit %q: TypeScript's baggage %q does not parse in Go: %v", u, fromTS.Outgoing[i], err)
		}
		_, d := down.BoolDetail(baggage.ContextWithBaggage(ctx, b), "pinned", sdk.EvalContext{Key: u}, false)
		if d.Variant != "on" || d.Reason != sdk.ReasonPinned {
			t.Fatalf("unit %q with TypeScript's baggage %q: Go served %s %s, want on pinned", u, fromTS.Outgoing[i], d.Variant, d.Reason)
		}
		// A pin is for its unit only.
		if _, d := down.BoolDetail(baggage.ContextWithBaggage(ctx, b), "pinned", sdk.EvalContext{Key: u + "-other"}, false); d.Reason == sdk.ReasonPinned {
			t.Fatalf("unit %q's pin was served to another unit", u)
		}
	}
}
