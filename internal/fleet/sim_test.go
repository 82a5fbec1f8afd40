package fleet

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestSimulationCountsAlongTheChain checks the counting a simulated request
// gets: once by every service that evaluates the flag, failed in every
// service from the one that failed up, and slower than an edge in every
// service above the slow one, whose time each adds to its own.
func TestSimulationCountsAlongTheChain(t *testing.T) {
	quick := Behaviour{Latency: time.Millisecond}
	slowPayments := Behaviour{Latency: time.Millisecond, TailRate: 1, TailLatency: 300 * time.Millisecond}
	for _, tc := range []struct {
		name, key, brokenAt string
		users               bool // the users' requests, else the heavy unit's
		// per request, in control: how many services count it, fail it,
		// and count it slower than 250 ms
		counted, failed, slow float64
	}{
		{name: "broken at the gateway", key: NewCheckout, brokenAt: Gateway, counted: 3, failed: 1},
		{name: "broken at payments", key: NewCheckout, brokenAt: Payments, counted: 3, failed: 3},
		{name: "evaluated in the gateway only", key: SlowSearch, brokenAt: Payments, counted: 1, failed: 1},
		{name: "evaluated below the gateway", key: FastPayments, brokenAt: Gateway, counted: 2},
		{name: "slow at payments", key: NewCheckout, users: true, counted: 3, slow: 3},
		{name: "the heavy unit in control beside", key: NewCheckout, counted: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Beside the flag, fast-payments's slow treatment at 100%:
			// every user gets it, the heavy unit never.
			cfg := SimConfig{Key: tc.key, Rate: 100, Users: 10, Control: quick, Treatment: map[string]Behaviour{FastPayments: slowPayments},
				HeavyShare: 1, BrokenAt: tc.brokenAt, Beside: map[string]Beside{FastPayments: {Percent: 100, For: time.Hour}}}
			if tc.users {
				cfg.HeavyShare = 0
			}
			s := NewSimulation(rand.New(rand.NewPCG(1, 2)), cfg)
			c := s.Advance(0, 2*time.Second)
			if c.Treatment.Requests != 0 {
				t.Fatalf("treatment has %v requests at 0%%", c.Treatment.Requests)
			}
			ctl := c.Control
			if want := 200 * tc.counted; ctl.Requests != want || ctl.Errors != 200*tc.failed || ctl.Slower[0.25] != 200*tc.slow {
				t.Errorf("control: %v requests, %v failed, %v slower than 250ms; want %v, %v, %v",
					ctl.Requests, ctl.Errors, ctl.Slower[0.25], want, 200*tc.failed, 200*tc.slow)
			}
			if ctl.Slower[0.5] != 0 {
				t.Errorf("%v requests slower than 500ms, want none", ctl.Slower[0.5])
			}
			var inBuckets float64
			for _, b := range ctl.UnitBuckets {
				inBuckets += b.Requests
			}
			if inBuckets != ctl.Requests {
				t.Errorf("unit buckets hold %v requests of %v", inBuckets, ctl.Requests)
			}
		})
	}
}
