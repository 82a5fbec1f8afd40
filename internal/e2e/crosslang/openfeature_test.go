package crosslang

import (
	"context"
	"log/slog"
	"net/url"
	"reflect"
	"testing"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"

	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/openfeature"
)

// ofEvents collects a client's provider events.
type ofEvents chan of.EventDetails

func watchEvents(c *of.Client, types ...of.EventType) ofEvents {
	e := make(ofEvents, 64)
	cb := func(d of.EventDetails) { e <- d }
	for _, t := range types {
		c.AddHandler(t, &cb)
	}
	return e
}

// next waits for an event that satisfies match.
func (e ofEvents) next(t *testing.T, what string, match func(of.EventDetails) bool) of.EventDetails {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case d := <-e:
			if match(d) {
				return d
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestOpenFeatureProviderAgainstVigilServe runs the Go OpenFeature provider
// against a real `vigil serve`: READY with the controller's flags, a flag
// changed through the admin API arriving as CONFIGURATION_CHANGED that names
// it, STALE when the controller is killed (the last flags still served),
// and READY again when a controller on the same address and data comes
// back, with changes flowing again.
func TestOpenFeatureProviderAgainstVigilServe(t *testing.T) {
	bin, data := vigiltest.Build(t), t.TempDir()
	p, ctl, token := startLive(t, bin, data)
	putFlag(t, ctl, "checkout", `{"variants": {"off": false, "on": true}, "control": "off", "treatment": "on", "enabled": true, "rollout": {"percent": 100}}`)

	provider := openfeature.New(sdk.Config{ServerURL: p.URL, Token: token, Logger: slog.New(slog.DiscardHandler),
		InitTimeout: time.Minute, PollInterval: 100 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	if err := of.SetNamedProviderAndWait("vigil-live", provider); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { provider.Shutdown() })
	c := of.NewClient("vigil-live")
	ev := watchEvents(c, of.ProviderConfigChange, of.ProviderStale, of.ProviderReady)
	ctx := context.Background()
	user := of.NewEvaluationContext("user-1", nil)

	if c.State() != of.ReadyState {
		t.Fatalf("state %s, want READY", c.State())
	}
	if d, err := c.BooleanValueDetails(ctx, "checkout", false, user); err != nil || !d.Value || d.Variant != "on" || d.Reason != of.SplitReason {
		t.Fatalf("checkout: %+v, %v", d, err)
	}
	if d, _ := c.BooleanValueDetails(ctx, "missing", true, user); !d.Value || d.ErrorCode != of.FlagNotFoundCode {
		t.Errorf("missing flag: %+v, want the default with FLAG_NOT_FOUND", d)
	}

	putFlag(t, ctl, "checkout", `{"variants": {"off": false, "on": true}, "control": "off", "treatment": "on", "enabled": true, "rollout": {"percent": 0}}`)
	changed := ev.next(t, "the change", func(d of.EventDetails) bool { return len(d.FlagChanges) > 0 })
	if !reflect.DeepEqual(changed.FlagChanges, []string{"checkout"}) {
		t.Errorf("flags changed %v, want [checkout]", changed.FlagChanges)
	}
	if c.Boolean(ctx, "checkout", true, user) {
		t.Error("checkout still on after the change")
	}

	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.Wait(time.Minute)
	ev.next(t, "STALE", func(of.EventDetails) bool { return c.State() == of.StaleState })
	if d, _ := c.BooleanValueDetails(ctx, "checkout", true, user); d.Value || d.Variant != "off" {
		t.Errorf("while stale: %+v, want the last snapshot's off", d)
	}

	addr, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	back := vigiltest.Start(t, bin, liveEnv, "--data", data, "--addr", addr.Host)
	ev.next(t, "READY again", func(of.EventDetails) bool { return c.State() == of.ReadyState })
	putFlag(t, ctl, "checkout", `{"variants": {"off": false, "on": true}, "control": "off", "treatment": "on", "enabled": true, "rollout": {"percent": 100}}`)
	ev.next(t, "a change after the restart", func(d of.EventDetails) bool { return reflect.DeepEqual(d.FlagChanges, []string{"checkout"}) })
	if !c.Boolean(ctx, "checkout", false, user) {
		t.Errorf("checkout off after the change on the restarted controller %s", back.URL)
	}
}
