// Package openfeature is an OpenFeature provider for Vigil's Go SDK, in its
// own module so that services which do not use OpenFeature never pull in
// github.com/open-feature/go-sdk.
//
// The provider evaluates in process, from the SDK client's memory:
// evaluations through OpenFeature record the same span events and cohort
// metrics as the client's own methods (pass the request's context, which
// carries the scope the SDK middleware made), and Track counts business
// events per cohort in the counter feature_flag.events.
//
// Events: READY after initialization and whenever the controller is
// reachable again; CONFIGURATION_CHANGED with the keys of the flags that
// changed; STALE while the controller is unreachable (the client keeps
// serving its last snapshot); ERROR when the controller refuses the token.
package openfeature

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// Name is the provider's name in OpenFeature metadata.
const Name = sdk.ProviderName

// ReasonPinned is the OpenFeature reason of a variant pinned upstream
// through baggage (sdk.ReasonPinned).
const ReasonPinned of.Reason = "PINNED"

// Provider is the OpenFeature provider. Create it with New, which makes and
// owns the SDK client, or NewWithClient, which shares one.
type Provider struct {
	cfg    sdk.Config
	owned  bool
	events chan of.Event

	mu     sync.Mutex
	client *sdk.Client
	cancel context.CancelFunc
	done   chan struct{}

	// health carries what the controller's answers say about its
	// reachability, from the HTTP transport to the watch loop.
	health chan health

	// metadata is the current version's metadata of each flag evaluated:
	// flag key -> *versionMetadata.
	metadata sync.Map
}

type health int

const (
	reachable health = iota
	unreachable
	refused // the token was refused
)

// New returns a provider that creates its client from cfg in Init and
// closes it in Shutdown. Only a provider made by New can announce STALE: it
// watches the client's requests to the controller through cfg.HTTPClient.
func New(cfg sdk.Config) *Provider {
	p := newProvider()
	p.cfg, p.owned = cfg, true
	return p
}

// NewWithClient returns a provider that evaluates with c, which the caller
// keeps and closes. Such a provider announces READY and
// CONFIGURATION_CHANGED; it cannot see whether the controller is
// reachable, so it never announces STALE.
func NewWithClient(c *sdk.Client) *Provider {
	p := newProvider()
	p.client = c
	return p
}

func newProvider() *Provider {
	return &Provider{events: make(chan of.Event, 16), health: make(chan health, 1)}
}

// Client returns the SDK client the provider evaluates with, nil before Init
// for a provider made by New. Use it for the SDK middleware and scopes.
func (p *Provider) Client() *sdk.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client
}

// Metadata names the provider.
func (p *Provider) Metadata() of.Metadata { return of.Metadata{Name: Name} }

// Hooks returns no hooks: the SDK client records telemetry itself.
func (p *Provider) Hooks() []of.Hook { return nil }

// EventChannel delivers the provider's events to OpenFeature.
func (p *Provider) EventChannel() <-chan of.Event { return p.events }

// Init starts the provider; see InitWithContext.
func (p *Provider) Init(evalCtx of.EvaluationContext) error {
	return p.InitWithContext(context.Background(), evalCtx)
}

// InitWithContext creates the client (for a provider made by New), waiting
// up to Config.InitTimeout for the first snapshot. Without any flags, from
// the controller or the cache, it fails and OpenFeature holds the provider
// in the ERROR state until a later READY event.
func (p *Provider) InitWithContext(ctx context.Context, _ of.EvaluationContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		return errors.New("openfeature: provider already initialized")
	}
	if p.owned {
		cfg := p.cfg
		hc := http.Client{}
		if cfg.HTTPClient != nil {
			hc = *cfg.HTTPClient
		}
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = &observer{base: base, report: p.report}
		cfg.HTTPClient = &hc
		c, err := sdk.New(ctx, cfg)
		if err != nil {
			return fmt.Errorf("openfeature: start vigil client: %w", err)
		}
		p.client = c
	}
	if p.client == nil {
		return errors.New("openfeature: no vigil client")
	}
	wctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	snap := p.client.Snapshot()
	go p.run(wctx, snap)
	if snap == nil {
		return errors.New("openfeature: no flags yet: the controller has not answered and there is no cache")
	}
	return nil
}

// Shutdown stops the provider; see ShutdownWithContext.
func (p *Provider) Shutdown() { _ = p.ShutdownWithContext(context.Background()) }

// ShutdownWithContext stops watching and, for a provider made by New,
// closes the client.
func (p *Provider) ShutdownWithContext(context.Context) error {
	p.mu.Lock()
	cancel, done, c := p.cancel, p.done, p.client
	p.cancel = nil
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	if p.owned && c != nil {
		return c.Close()
	}
	return nil
}

// report passes a reachability observation to the watch loop, keeping only
// the newest.
func (p *Provider) report(h health) {
	for {
		select {
		case p.health <- h:
			return
		default:
		}
		select {
		case <-p.health:
		default:
		}
	}
}

// run announces snapshot changes and reachability transitions.
func (p *Provider) run(ctx context.Context, last *flag.Snapshot) {
	defer close(p.done)
	ready := last != nil
	stale, refusedOnce := false, false
	// The snapshot read at Init may already be stale; compare once at once.
	updated := closedChannel()
	for {
		select {
		case <-ctx.Done():
			return
		case h := <-p.health:
			if h != refused {
				refusedOnce = false
			}
			switch {
			case h == unreachable && ready && !stale:
				stale = true
				p.emit(ctx, of.ProviderStale, of.ProviderEventDetails{Message: "vigil: controller unreachable; serving the last snapshot"})
			case h == reachable && stale:
				stale = false
				p.emit(ctx, of.ProviderReady, of.ProviderEventDetails{Message: "vigil: controller reachable again"})
			case h == refused && !refusedOnce:
				refusedOnce = true
				p.emit(ctx, of.ProviderError, of.ProviderEventDetails{Message: "vigil: the controller refused the token", ErrorCode: of.GeneralCode})
			}
		case <-updated:
			updated = p.client.Updated()
			snap := p.client.Snapshot()
			if snap == last || snap == nil {
				continue
			}
			changed := changedKeys(last, snap)
			last = snap
			if !ready {
				ready = true
				p.emit(ctx, of.ProviderReady, of.ProviderEventDetails{Message: "vigil: flags received"})
				continue
			}
			if len(changed) > 0 {
				p.emit(ctx, of.ProviderConfigChange, of.ProviderEventDetails{Message: "vigil: flags changed", FlagChanges: changed})
			}
		}
	}
}

func closedChannel() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func (p *Provider) emit(ctx context.Context, t of.EventType, d of.ProviderEventDetails) {
	select {
	case p.events <- of.Event{ProviderName: Name, EventType: t, ProviderEventDetails: d}:
	case <-ctx.Done():
	}
}

// changedKeys lists the flags added, changed or deleted between two
// snapshots, sorted. Flags from a file have no version, so their
// definitions are compared.
func changedKeys(prev, next *flag.Snapshot) []string {
	var out []string
	seen := make(map[string]bool, next.Len())
	for _, f := range next.Flags() {
		seen[f.Key] = true
		old, ok := flag.Flag{}, false
		if prev != nil {
			old, ok = prev.Flag(f.Key)
		}
		if !ok || old.Version != f.Version || !sameDefinition(old, f) {
			out = append(out, f.Key)
		}
	}
	if prev != nil {
		for _, f := range prev.Flags() {
			if !seen[f.Key] {
				out = append(out, f.Key)
			}
		}
	}
	slices.Sort(out)
	return out
}

func sameDefinition(a, b flag.Flag) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// observer watches the client's requests to the controller: a transport
// error or a 5xx means unreachable, a 401 or 403 a refused token, any
// other answer reachable.
type observer struct {
	base   http.RoundTripper
	report func(health)
}

func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.base.RoundTrip(req)
	switch {
	case err != nil:
		// The client cancelling its own request says nothing about the
		// controller.
		if req.Context().Err() == nil {
			o.report(unreachable)
		}
	case resp.StatusCode >= 500:
		o.report(unreachable)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		o.report(refused)
	default:
		o.report(reachable)
	}
	return resp, err
}

// evalContext converts OpenFeature's flattened context: the targeting key
// is the unit, everything else an attribute.
func evalContext(flat of.FlattenedContext) sdk.EvalContext {
	var ec sdk.EvalContext
	if tk, ok := flat[of.TargetingKey]; ok {
		ec.Key, _ = tk.(string)
		if len(flat) == 1 {
			return ec
		}
	}
	ec.Attributes = make(map[string]any, len(flat))
	for k, v := range flat {
		if k == of.TargetingKey {
			continue
		}
		if t, ok := v.(time.Time); ok {
			v = t.UTC().Format(time.RFC3339Nano)
		}
		ec.Attributes[k] = v
	}
	return ec
}

var reasons = map[flag.Reason]of.Reason{
	flag.ReasonDisabled:       of.DisabledReason,
	flag.ReasonTargetingMatch: of.TargetingMatchReason,
	flag.ReasonSplit:          of.SplitReason,
	flag.ReasonDefault:        of.DefaultReason,
	flag.ReasonError:          of.ErrorReason,
	sdk.ReasonPinned:          ReasonPinned,
}

// versionMetadata is the FlagMetadata of one version of a flag.
type versionMetadata struct {
	version int64
	tracked bool
	md      of.FlagMetadata
}

// flagMetadata returns the metadata of d's flag version, built once per
// version and shared by evaluations (OpenFeature copies it before handing it
// out), so that an evaluation does not allocate a map.
func (p *Provider) flagMetadata(d sdk.Detail) of.FlagMetadata {
	if v, ok := p.metadata.Load(d.Key); ok {
		if m := v.(*versionMetadata); m.version == d.Version && m.tracked == d.Tracked {
			return m.md
		}
	}
	m := &versionMetadata{version: d.Version, tracked: d.Tracked, md: of.FlagMetadata{"version": d.Version, "tracked": d.Tracked}}
	p.metadata.Store(d.Key, m)
	return m.md
}

func (p *Provider) resolution(d sdk.Detail) of.ProviderResolutionDetail {
	r := of.ProviderResolutionDetail{
		Reason:  reasons[d.Reason],
		Variant: d.Variant,
	}
	if r.Reason == "" {
		r.Reason = of.Reason(strings.ToUpper(string(d.Reason)))
	}
	if d.Variant != "" {
		r.FlagMetadata = p.flagMetadata(d)
	}
	if d.ErrorType == "" {
		return r
	}
	msg := d.Key + ": " + string(d.ErrorType)
	switch d.ErrorType {
	case flag.ErrorFlagNotFound:
		r.ResolutionError = of.NewFlagNotFoundResolutionError(msg)
	case flag.ErrorTargetingKeyMissing:
		r.ResolutionError = of.NewTargetingKeyMissingResolutionError(msg)
	case flag.ErrorTypeMismatch:
		r.ResolutionError = of.NewTypeMismatchResolutionError(msg)
	case flag.ErrorProviderNotReady:
		r.ResolutionError = of.NewProviderNotReadyResolutionError(msg)
	default:
		r.ResolutionError = of.NewGeneralResolutionError(msg)
	}
	return r
}

var notReady = of.ProviderResolutionDetail{
	Reason:          of.ErrorReason,
	ResolutionError: of.NewProviderNotReadyResolutionError("vigil: provider not initialized"),
}

// BooleanEvaluation evaluates a flag whose variants are booleans.
func (p *Provider) BooleanEvaluation(ctx context.Context, key string, def bool, flat of.FlattenedContext) of.BoolResolutionDetail {
	c := p.Client()
	if c == nil {
		return of.BoolResolutionDetail{Value: def, ProviderResolutionDetail: notReady}
	}
	v, d := c.BoolDetail(ctx, key, evalContext(flat), def)
	return of.BoolResolutionDetail{Value: v, ProviderResolutionDetail: p.resolution(d)}
}

// StringEvaluation evaluates a flag whose variants are strings.
func (p *Provider) StringEvaluation(ctx context.Context, key string, def string, flat of.FlattenedContext) of.StringResolutionDetail {
	c := p.Client()
	if c == nil {
		return of.StringResolutionDetail{Value: def, ProviderResolutionDetail: notReady}
	}
	v, d := c.StringDetail(ctx, key, evalContext(flat), def)
	return of.StringResolutionDetail{Value: v, ProviderResolutionDetail: p.resolution(d)}
}

// FloatEvaluation evaluates a flag whose variants are numbers.
func (p *Provider) FloatEvaluation(ctx context.Context, key string, def float64, flat of.FlattenedContext) of.FloatResolutionDetail {
	c := p.Client()
	if c == nil {
		return of.FloatResolutionDetail{Value: def, ProviderResolutionDetail: notReady}
	}
	v, d := c.FloatDetail(ctx, key, evalContext(flat), def)
	return of.FloatResolutionDetail{Value: v, ProviderResolutionDetail: p.resolution(d)}
}

// IntEvaluation evaluates a flag whose variants are whole numbers.
func (p *Provider) IntEvaluation(ctx context.Context, key string, def int64, flat of.FlattenedContext) of.IntResolutionDetail {
	c := p.Client()
	if c == nil {
		return of.IntResolutionDetail{Value: def, ProviderResolutionDetail: notReady}
	}
	v, d := c.IntDetail(ctx, key, evalContext(flat), def)
	return of.IntResolutionDetail{Value: v, ProviderResolutionDetail: p.resolution(d)}
}

// ObjectEvaluation evaluates a flag with any JSON variants; the value is
// shared, do not modify it.
func (p *Provider) ObjectEvaluation(ctx context.Context, key string, def any, flat of.FlattenedContext) of.InterfaceResolutionDetail {
	c := p.Client()
	if c == nil {
		return of.InterfaceResolutionDetail{Value: def, ProviderResolutionDetail: notReady}
	}
	v, d := c.JSONDetail(ctx, key, evalContext(flat), def)
	return of.InterfaceResolutionDetail{Value: v, ProviderResolutionDetail: p.resolution(d)}
}

// Track counts a business event in the cohort of every tracked flag
// evaluated so far in ctx's scope (counter feature_flag.events). Without a
// scope in ctx it does nothing.
func (p *Provider) Track(ctx context.Context, name string, _ of.EvaluationContext, _ of.TrackingEventDetails) {
	if c := p.Client(); c != nil {
		c.Track(ctx, name)
	}
}

// The interfaces OpenFeature discovers.
var (
	_ of.FeatureProvider          = (*Provider)(nil)
	_ of.ContextAwareStateHandler = (*Provider)(nil)
	_ of.EventHandler             = (*Provider)(nil)
	_ of.Tracker                  = (*Provider)(nil)
)
