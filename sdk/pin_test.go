package sdk

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// extractBaggage is what otelhttp's server handler does with the global
// propagator: read the baggage header into the request's context.
func extractBaggage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := propagation.Baggage{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type served struct {
	Self    flag.Detail `json:"self"`
	Other   flag.Detail `json:"other"`
	Down    *served     `json:"down,omitempty"`
	Baggage string      `json:"baggage,omitempty"`
}

// twoServices starts service B (downstream) and service A, which evaluates
// "checkout" for the user in X-User and then calls B with the same context,
// propagating baggage the way otelhttp's transport does.
func twoServices(t *testing.T, a, b *Client) string {
	t.Helper()
	downstream := httptest.NewServer(extractBaggage(b.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, self := b.BoolDetail(r.Context(), "checkout", EvalContext{Key: r.Header.Get("X-User")}, false)
		_, other := b.BoolDetail(r.Context(), "checkout", EvalContext{Key: "someone-else"}, false)
		json.NewEncoder(w).Encode(served{Self: self, Other: other, Baggage: r.Header.Get("Baggage")})
	}))))
	t.Cleanup(downstream.Close)
	upstream := httptest.NewServer(extractBaggage(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-User")
		_, self := a.BoolDetail(r.Context(), "checkout", EvalContext{Key: user}, false)
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, downstream.URL, nil)
		req.Header.Set("X-User", user)
		propagation.Baggage{}.Inject(r.Context(), propagation.HeaderCarrier(req.Header))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var down served
		json.NewDecoder(resp.Body).Decode(&down)
		json.NewEncoder(w).Encode(served{Self: self, Down: &down})
	}))))
	t.Cleanup(upstream.Close)
	return upstream.URL
}

func call(t *testing.T, url, user, bag string) served {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-User", user)
	if bag != "" {
		req.Header.Set("Baggage", bag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s served
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || s.Down == nil {
		t.Fatalf("response: %+v, %v", s, err)
	}
	return s
}

func TestBaggagePinningAcrossServices(t *testing.T) {
	// A already has the rollout at 100%, B still has it at 0%: without
	// pinning the same request would see both variants.
	a := staticClient(t, nil, rollout("checkout", 100, true))
	readerB := sdkmetric.NewManualReader()
	mpB := sdkmetric.NewMeterProvider(sdkmetric.WithReader(readerB))
	b := staticClient(t, mpB, rollout("checkout", 0, true))
	url := twoServices(t, a, b)

	s := call(t, url, "user-1", "")
	if s.Self.Variant != "on" || s.Self.Reason != flag.ReasonSplit {
		t.Fatalf("A served %+v", s.Self)
	}
	if s.Down.Self.Variant != "on" || s.Down.Self.Reason != ReasonPinned || s.Down.Self.Value != true {
		t.Errorf("B served %+v, want the pinned variant on with reason pinned", s.Down.Self)
	}
	if s.Down.Other.Variant != "off" || s.Down.Other.Reason != flag.ReasonSplit {
		t.Errorf("B served another unit %+v, want its own evaluation", s.Down.Other)
	}
	bag, err := baggage.Parse(s.Down.Baggage)
	if err != nil {
		t.Fatalf("baggage header %q: %v", s.Down.Baggage, err)
	}
	m := bag.Member("vigil.flag.checkout")
	if m.Value() != "on" || !strings.Contains(m.String(), "reason=split") || !strings.Contains(m.String(), "unit=") {
		t.Errorf("pin member = %q", m.String())
	}

	// B's cohort metrics count the pinned request in A's cohort (split),
	// in the unit's bucket as A counts it.
	equal(t, "B's requests", counts(t, collect(t, readerB)["feature_flag.requests"]), []string{
		"feature_flag.key=checkout,feature_flag.result.reason=split,feature_flag.result.variant=on" + bucketAttr("user-1") + " => 1",
	})
}

func TestPinsNotHonoured(t *testing.T) {
	offOnly := rollout("checkout", 0, true)
	offOnly.Variants = map[string]json.RawMessage{"off": json.RawMessage("false"), "v2": json.RawMessage("true")}
	offOnly.Treatment = "v2"
	disabled := rollout("checkout", 100, true)
	disabled.Enabled = false
	tests := []struct {
		name   string
		a, b   flag.Flag
		bCfg   func(*Config)
		reason flag.Reason
	}{
		{"variant unknown downstream", rollout("checkout", 100, true), offOnly, nil, flag.ReasonSplit},
		{"untracked upstream", rollout("checkout", 100, false), rollout("checkout", 0, true), nil, flag.ReasonSplit},
		{"disabled downstream", rollout("checkout", 100, true), disabled, nil, flag.ReasonDisabled},
		{"pinning off downstream", rollout("checkout", 100, true), rollout("checkout", 0, true), func(c *Config) { c.DisablePinning = true }, flag.ReasonSplit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := staticClient(t, nil, tt.a)
			b := staticClientWith(t, tt.bCfg, tt.b)
			s := call(t, twoServices(t, a, b), "user-1", "")
			if s.Down.Self.Reason != tt.reason || s.Down.Self.Variant == "on" {
				t.Errorf("B served %+v, want its own evaluation with reason %s", s.Down.Self, tt.reason)
			}
		})
	}
}

func TestBadIncomingPinsIgnored(t *testing.T) {
	b := staticClient(t, nil, rollout("checkout", 0, true))
	url := twoServices(t, b, b) // both services run the 0% flag
	unitHex := func(u string) string { return strconv.FormatUint(uint64(flag.Hash("checkout", u)), 16) }
	good := "vigil.flag.checkout=on;reason=split;unit=" + unitHex("user-1")
	if s := call(t, url, "user-1", good); s.Self.Reason != ReasonPinned || s.Self.Variant != "on" {
		t.Fatalf("a valid incoming pin was not honoured: %+v", s.Self)
	}
	for _, bag := range []string{
		"vigil.flag.checkout=on;reason=bogus;unit=" + unitHex("user-1"),
		"vigil.flag.checkout=on;reason=split;unit=" + unitHex("user-2"),
		"vigil.flag.checkout=on;reason=split",
		"vigil.flag.checkout=on;reason=error;unit=" + unitHex("user-1"),
		"vigil.flag.checkout=on;reason=split;unit=zz",
		"vigil.flag.checkout=nope;reason=split;unit=" + unitHex("user-1"),
	} {
		s := call(t, url, "user-1", bag)
		if s.Self.Variant != "off" || s.Self.Reason != flag.ReasonSplit {
			t.Errorf("baggage %q: served %+v, want the unit's own evaluation", bag, s.Self)
		}
	}
}

func TestPinHoldsWithinRequestAcrossUpdate(t *testing.T) {
	c := staticClient(t, nil, rollout("checkout", 100, true))
	ctx, scope := c.StartScope(context.Background())
	defer scope.End(nil)
	if _, d := c.BoolDetail(ctx, "checkout", unit("u"), false); d.Variant != "on" || d.Reason != flag.ReasonSplit {
		t.Fatalf("first evaluation %+v", d)
	}
	if err := c.store.replace(2, []flag.Flag{rollout("checkout", 0, true)}); err != nil {
		t.Fatal(err)
	}
	if _, d := c.BoolDetail(ctx, "checkout", unit("u"), false); d.Variant != "on" || d.Reason != ReasonPinned {
		t.Errorf("after the update, same request: %+v, want the pinned variant", d)
	}
	if _, d := c.BoolDetail(context.Background(), "checkout", unit("u"), true); d.Variant != "off" {
		t.Errorf("after the update, new request: %+v, want the new evaluation", d)
	}
	if m := baggage.FromContext(ctx).Member("vigil.flag.checkout"); m.Value() != "on" {
		t.Errorf("baggage of the scope's context: %q", m.String())
	}
}
