package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/controller/rollout"
)

// receiver is a webhook endpoint on loopback that records what it got and
// answers with the statuses it is given, then 200.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   [][]byte
	sigs     []string
	statuses []int
	delay    time.Duration
	got      chan struct{}
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses, got: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.sigs = append(r.sigs, req.Header.Get(SignatureHeader))
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		delay := r.delay
		r.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
			}
		}
		w.WriteHeader(status)
		r.got <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func event() Event {
	return NewEvent("checkout", rollout.Transition{
		At: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), From: rollout.Progressing, To: rollout.RolledBack,
		Percent: 0, Step: 2, Actor: rollout.ControllerActor, Reason: "the judge found the treatment worse than control",
		Evidence: &rollout.Verdict{Outcome: judge.Fail, Summary: "treatment error rate 2.1% vs control 1.0%: fail",
			Metrics: []rollout.MetricVerdict{{Name: "error-rate", Outcome: judge.Fail, EValue: 140, Threshold: 100}}},
	})
}

func fast() Options {
	return Options{Timeout: time.Second, Attempts: 4, Backoff: time.Millisecond, Queue: 8, Client: &http.Client{}}
}

func TestDeliverSignsTheJSONBody(t *testing.T) {
	r := newReceiver(t)
	if err := Deliver(context.Background(), Webhook{URL: r.URL, Secret: "s3cret"}, event(), fast()); err != nil {
		t.Fatal(err)
	}
	if r.requests() != 1 {
		t.Fatalf("%d requests, want 1", r.requests())
	}
	body, sig := r.bodies[0], r.sigs[0]
	if !Verify("s3cret", body, sig) || !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Errorf("signature %q does not verify", sig)
	}
	if Verify("other", body, sig) {
		t.Error("signature verifies under the wrong secret")
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"type": "rollout.transition", "flag": "checkout", "from": "progressing", "to": "rolled_back", "percent": 0.0, "step": 2.0, "actor": "controller"} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	ev, _ := got["evidence"].(map[string]any)
	if ev["outcome"] != "fail" || !strings.Contains(ev["summary"].(string), "2.1%") {
		t.Errorf("evidence %v", got["evidence"])
	}
}

func TestDeliverWithoutSecretSendsNoSignature(t *testing.T) {
	r := newReceiver(t)
	if err := Deliver(context.Background(), Webhook{URL: r.URL}, event(), fast()); err != nil {
		t.Fatal(err)
	}
	if r.sigs[0] != "" {
		t.Errorf("signature %q without a secret", r.sigs[0])
	}
}

func TestDeliverRetriesServerErrors(t *testing.T) {
	r := newReceiver(t, 500, 503, 429)
	if err := Deliver(context.Background(), Webhook{URL: r.URL, Secret: "k"}, event(), fast()); err != nil {
		t.Fatal(err)
	}
	if r.requests() != 4 {
		t.Errorf("%d requests, want 3 failures and a success", r.requests())
	}
	for i := 1; i < 4; i++ {
		if string(r.bodies[i]) != string(r.bodies[0]) || r.sigs[i] != r.sigs[0] {
			t.Error("a retry sent a different body or signature")
		}
	}
}

func TestDeliverGivesUpAfterAttempts(t *testing.T) {
	r := newReceiver(t, 500, 500, 500, 500, 500)
	err := Deliver(context.Background(), Webhook{URL: r.URL + "/token-XYZ"}, event(), fast())
	if err == nil || !strings.Contains(err.Error(), "attempt 4 of 4") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "token-XYZ") {
		t.Errorf("error %q shows the URL's path", err)
	}
	if r.requests() != 4 {
		t.Errorf("%d requests, want 4", r.requests())
	}
}

func TestDeliverDoesNotRetryClientErrors(t *testing.T) {
	r := newReceiver(t, 400)
	err := Deliver(context.Background(), Webhook{URL: r.URL}, event(), fast())
	if err == nil || !strings.Contains(err.Error(), "attempt 1 of 4") || r.requests() != 1 {
		t.Fatalf("err = %v after %d requests", err, r.requests())
	}
}

// TestDeliverNeverFollowsRedirects: a webhook that redirects gets the
// signed body once, and the address it redirects to never sees it.
func TestDeliverNeverFollowsRedirects(t *testing.T) {
	elsewhere := newReceiver(t)
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			http.Redirect(w, req, elsewhere.URL, status)
		}))
		err := Deliver(context.Background(), Webhook{URL: redirecting.URL, Secret: "s3cret"}, event(), fast())
		redirecting.Close()
		if err == nil || !strings.Contains(err.Error(), "attempt 1 of 4") || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("%d: err = %v; want one attempt refused for the redirect", status, err)
		}
	}
	if n := elsewhere.requests(); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}
}

func TestDeliverTimesOut(t *testing.T) {
	r := newReceiver(t)
	r.delay = time.Minute
	opts := fast()
	opts.Timeout, opts.Attempts = 50*time.Millisecond, 2
	err := Deliver(context.Background(), Webhook{URL: r.URL + "/secret-path"}, event(), opts)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if strings.Contains(err.Error(), "secret-path") {
		t.Errorf("error %q shows the URL's path", err)
	}
}

func TestSlackFormat(t *testing.T) {
	r := newReceiver(t)
	if err := Deliver(context.Background(), Webhook{URL: r.URL, Format: FormatSlack}, event(), fast()); err != nil {
		t.Fatal(err)
	}
	var msg map[string]string
	if err := json.Unmarshal(r.bodies[0], &msg); err != nil {
		t.Fatal(err)
	}
	want := ":rotating_light: *checkout*: progressing → rolled_back at 0% (by controller)\n" +
		"the judge found the treatment worse than control\nverdict: fail: treatment error rate 2.1% vs control 1.0%: fail"
	if len(msg) != 1 || msg["text"] != want {
		t.Errorf("slack body %s\nwant text %q", r.bodies[0], want)
	}
}

func TestNotifierDeliversInOrderAndCloses(t *testing.T) {
	a, b := newReceiver(t, 500), newReceiver(t)
	opts := fast()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	n, err := New([]Webhook{{URL: a.URL, Secret: "x"}, {URL: b.URL, Format: FormatSlack}, {URL: "http://127.0.0.1:1/closed"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e := event()
		e.Step = i
		n.Notify(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n.Notify(event()) // after Close: ignored, no panic
	if a.requests() != 4 || b.requests() != 3 {
		t.Fatalf("requests a=%d b=%d, want 4 (one retry) and 3", a.requests(), b.requests())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP vigil_webhook_deliveries_total Webhook deliveries of rollout transitions by outcome: delivered, failed after every attempt, or dropped from a full queue.
# TYPE vigil_webhook_deliveries_total counter
vigil_webhook_deliveries_total{outcome="delivered"} 6
vigil_webhook_deliveries_total{outcome="failed"} 3
`), MetricDeliveries); err != nil {
		t.Error(err)
	}
	for i, body := range a.bodies[1:] {
		var e Event
		if err := json.Unmarshal(body, &e); err != nil || e.Step != i {
			t.Errorf("event %d has step %d (%v): out of order", i, e.Step, err)
		}
	}
}

func TestNotifierCloseCancelsStuckDeliveries(t *testing.T) {
	r := newReceiver(t)
	r.delay = time.Minute
	opts := fast()
	opts.Timeout = time.Minute
	n, err := New([]Webhook{{URL: r.URL}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(event())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("Close = %v, want the context's error", err)
	}
}

func TestNewRejectsBadWebhooks(t *testing.T) {
	for _, tc := range []struct {
		hook Webhook
		want string
	}{
		{Webhook{URL: "ftp://example.com/x"}, "want an absolute http or https URL"},
		{Webhook{URL: "/relative"}, "want an absolute http or https URL"},
		{Webhook{URL: "https://hooks.example.com/T0/B0/secret", Format: "xml"}, `format "xml" must be json or slack`},
	} {
		_, err := New([]Webhook{tc.hook}, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.hook, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q shows the URL's path", err)
		}
	}
}
