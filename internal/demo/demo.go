// Package demo tells Vigil's story against a running controller: a fleet of
// three services under load, two rollouts at once, one healthy and promoted,
// one harmful and rolled back by the judge, watched live and summarized.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/fleet"
)

// Options configure a demo run.
type Options struct {
	// ServerURL and Token reach the controller's admin API and SDK
	// endpoints; Token must be an admin token.
	ServerURL string
	Token     string
	// OTLPEndpoint, when set, is where the services push their metrics
	// (the controller's embedded metric store). Otherwise something must
	// scrape fleet targets: see Fleet.
	OTLPEndpoint string
	// Fleet, when set, is called with the fleet's /metrics targets before
	// any rollout starts, so that a Prometheus can be pointed at them.
	Fleet func(ctx context.Context, targets []string) error
	// Interval is the analysis cadence; StepDuration each step's bake time.
	Interval     time.Duration
	StepDuration time.Duration
	// Rate is requests per second through the gateway; Users distinct users.
	Rate  float64
	Users int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Out receives the live view and the summary.
	Out io.Writer
	// Live redraws the view in place (for a terminal); otherwise it
	// prints a line whenever a rollout changes.
	Live bool
}

// The demo's flags: new-checkout's treatment is healthy, fast-payments's
// fails twice as often and is slower in the tail.
var (
	healthy = fleet.Behaviour{ErrorRate: 0.01, Latency: 3 * time.Millisecond, TailRate: 0.02, TailLatency: 60 * time.Millisecond}
	harmful = fleet.Behaviour{ErrorRate: 0.04, Latency: 3 * time.Millisecond, TailRate: 0.2, TailLatency: 300 * time.Millisecond}
)

// Outcome is what a demo run produced.
type Outcome struct {
	Rollouts map[string]rollout.State
	// Sent and Failed count the load generator's requests.
	Sent, Failed int64
	// CrossService maps a flag to how many users saw it in more than one
	// service, and Mismatched to how many of those saw different variants.
	CrossService, Mismatched map[string]int
	Elapsed                  time.Duration
}

// Expected reports whether the run ended as the story says: new-checkout
// promoted and fast-payments rolled back by the controller, with no user
// ever seeing two variants of a flag.
func (o Outcome) Expected() error {
	var errs []error
	if s := o.Rollouts[fleet.NewCheckout]; s.Phase != rollout.Promoted {
		errs = append(errs, fmt.Errorf("%s ended %s at %v%%, want promoted", fleet.NewCheckout, s.Phase, s.Percent))
	}
	if s := o.Rollouts[fleet.FastPayments]; s.Phase != rollout.RolledBack {
		errs = append(errs, fmt.Errorf("%s ended %s at %v%%, want rolled_back", fleet.FastPayments, s.Phase, s.Percent))
	}
	for k, n := range o.Mismatched {
		if n > 0 {
			errs = append(errs, fmt.Errorf("%d users saw different variants of %s in different services", n, k))
		}
	}
	return errors.Join(errs...)
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.StepDuration <= 0 {
		o.StepDuration = 8 * o.Interval
	}
	if o.Rate <= 0 {
		o.Rate = 400
	}
	if o.Users <= 0 {
		o.Users = 20000
	}
	if o.Timeout <= 0 {
		o.Timeout = 150 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// FlagsFile is the demo's flags file, with a plan compressed to the given
// interval and bake time.
func FlagsFile(interval, step time.Duration) string {
	plan := fmt.Sprintf(`
      plan:
        steps: [5, 10, 25, 50, 100]
        interval: %s
        minStepDuration: %s
        maxStepDuration: %s
        minRequests: 250
        onTimeout: pause
        metrics:
          - {name: error-rate, tolerance: 1.2}
          - {name: latency, tolerance: 1.2}`, interval, step, 12*step)
	return `flags:
  - key: new-checkout
    description: New checkout flow; its treatment is healthy
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets:
      - {variant: on, units: [qa-1, qa-2]}
    rollout:
      percent: 0` + plan + `
  - key: fast-payments
    description: Faster payment path; its treatment fails twice as often and is slower in the tail
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    rollout:
      percent: 0` + plan + `
  - key: slow-search
    description: Search rewrite, not rolled out in the demo
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
`
}

// Run plays the demo against the controller and returns when both rollouts
// have finished, or ctx ends, or the timeout passes.
func Run(ctx context.Context, opts Options) (Outcome, error) {
	opts.defaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	api, err := client.New(opts.ServerURL, opts.Token)
	if err != nil {
		return Outcome{}, err
	}
	w := opts.Out
	fmt.Fprintf(w, "Vigil demo: controller at %s\n", opts.ServerURL)

	if _, err := api.Apply(ctx, []byte(FlagsFile(opts.Interval, opts.StepDuration)), false, false, "demo flags"); err != nil {
		return Outcome{}, fmt.Errorf("apply demo flags: %w", err)
	}
	seen := newSightings()
	fl, err := fleet.Start(ctx, fleet.Config{
		ControllerURL: opts.ServerURL, Token: opts.Token,
		OTLPEndpoint: opts.OTLPEndpoint, PushInterval: opts.Interval,
		Headers: map[string]string{"Authorization": "Bearer " + opts.Token},
		Control: healthy,
		Treatment: map[string]fleet.Behaviour{
			fleet.NewCheckout:  healthy,
			fleet.FastPayments: harmful,
		},
		Seen: seen.record,
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("start the fleet: %w", err)
	}
	defer fl.Close()
	fmt.Fprintf(w, "fleet: gateway -> checkout -> payments, gateway at %s\n", fl.GatewayURL())
	if opts.Fleet != nil {
		if err := opts.Fleet(ctx, fl.MetricsTargets()); err != nil {
			return Outcome{}, err
		}
	}

	load := &fleet.Load{Rate: opts.Rate, Users: opts.Users, Workers: 32}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadDone sync.WaitGroup
	loadDone.Add(1)
	go func() {
		defer loadDone.Done()
		load.Run(loadCtx, fl)
	}()
	defer func() {
		stopLoad()
		loadDone.Wait()
	}()
	fmt.Fprintf(w, "load: %.0f requests/s from %d users\n\n", opts.Rate, opts.Users)

	for _, key := range []string{fleet.NewCheckout, fleet.FastPayments} {
		var st rollout.State
		if err := api.Do(ctx, client.Request{Method: http.MethodPost, Path: "/api/v1/rollouts/" + key + "/start",
			Body: map[string]string{"reason": "demo"}}, &st); err != nil {
			return Outcome{}, fmt.Errorf("start rollout %s: %w", key, err)
		}
	}

	view := &liveView{out: w, live: opts.Live}
	states, err := watch(ctx, api, opts.Interval/2, view)
	stopLoad()
	loadDone.Wait()
	out := Outcome{Rollouts: states, Sent: load.Sent(), Failed: load.Failed(), Elapsed: time.Since(start)}
	out.CrossService, out.Mismatched = seen.summary()
	if err != nil {
		return out, err
	}
	return out, nil
}

// watch polls the rollouts until both demo rollouts are finished.
func watch(ctx context.Context, api *client.Client, every time.Duration, view *liveView) (map[string]rollout.State, error) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	states := map[string]rollout.State{}
	for {
		var list struct {
			Rollouts []rollout.State `json:"rollouts"`
		}
		if err := api.Do(ctx, client.Request{Method: http.MethodGet, Path: "/api/v1/rollouts"}, &list); err != nil {
			if ctx.Err() != nil {
				return states, fmt.Errorf("rollouts did not finish in time: %w", ctx.Err())
			}
			return states, err
		}
		for _, s := range list.Rollouts {
			states[s.Key] = s
		}
		view.draw(states)
		if finished(states[fleet.NewCheckout]) && finished(states[fleet.FastPayments]) {
			return states, nil
		}
		select {
		case <-ctx.Done():
			return states, fmt.Errorf("rollouts did not finish in time: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func finished(s rollout.State) bool {
	switch s.Phase {
	case rollout.Promoted, rollout.RolledBack, rollout.Aborted, rollout.Paused:
		return true
	}
	return false
}

// sightings remembers which variant each service served in each request,
// for the cross-service check. A user may rightly get a new variant when the
// percentage changes; what must never happen is two services serving
// different variants of a flag within one request.
type sightings struct {
	mu sync.Mutex
	// by flag, then request: the variant served, or "" once services
	// disagreed.
	requests map[string]map[string]sighting
}

type sighting struct {
	unit     string
	variant  string
	services int
	mismatch bool
}

func newSightings() *sightings {
	return &sightings{requests: map[string]map[string]sighting{}}
}

func (s *sightings) record(_, key, unit, request, variant string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reqs := s.requests[key]
	if reqs == nil {
		reqs = map[string]sighting{}
		s.requests[key] = reqs
	}
	got, ok := reqs[request]
	if !ok {
		reqs[request] = sighting{unit: unit, variant: variant, services: 1}
		return
	}
	got.services++
	got.mismatch = got.mismatch || got.variant != variant
	reqs[request] = got
}

// summary counts, per flag, the users seen in more than one service and the
// users who were ever served different variants within one request.
func (s *sightings) summary() (multi, mismatched map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	multi, mismatched = map[string]int{}, map[string]int{}
	for key, reqs := range s.requests {
		users, bad := map[string]bool{}, map[string]bool{}
		for _, r := range reqs {
			if r.services > 1 {
				users[r.unit] = true
			}
			if r.mismatch {
				bad[r.unit] = true
			}
		}
		multi[key], mismatched[key] = len(users), len(bad)
	}
	return multi, mismatched
}

func formatPercent(p float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", p), "0"), ".")
}
