// Package notify tells people about rollout transitions through webhooks: a
// JSON POST per transition, signed with HMAC-SHA256, retried with backoff,
// or a Slack-compatible message.
//
// Delivery happens after the transition's transaction has committed and is
// at most once per process: a controller killed with events still queued
// does not send them after it restarts. The rollout's history in the store
// is the record; webhooks are the alert.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-dev/vigil/controller/rollout"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
// under the webhook's secret.
const SignatureHeader = "X-Vigil-Signature"

// EventType is the "type" of every transition payload.
const EventType = "rollout.transition"

// Format is how a webhook's body is written.
type Format string

// Webhook body formats.
const (
	// FormatJSON is Vigil's own payload: the Event as JSON.
	FormatJSON Format = "json"
	// FormatSlack is a Slack incoming-webhook message ({"text": ...}),
	// which Mattermost, Rocket.Chat and Teams' Slack connector also take.
	FormatSlack Format = "slack"
)

// Webhook is one receiver of transitions.
type Webhook struct {
	URL string
	// Secret signs the body; empty sends no signature.
	Secret string
	// Format is FormatJSON when empty.
	Format Format
}

// Validate reports what is wrong with w.
func (w Webhook) Validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook url %q: want an absolute http or https URL", w.URL)
	}
	if w.Format != "" && w.Format != FormatJSON && w.Format != FormatSlack {
		return fmt.Errorf("webhook %s: format %q must be json or slack", redact(u), w.Format)
	}
	return nil
}

// Event is one transition of one flag's rollout, as sent in FormatJSON.
type Event struct {
	Type string `json:"type"`
	Flag string `json:"flag"`
	rollout.Transition
}

// NewEvent returns the event for a transition of flag key.
func NewEvent(key string, t rollout.Transition) Event {
	return Event{Type: EventType, Flag: key, Transition: t}
}

// Options tune delivery; zero values take the defaults.
type Options struct {
	// Timeout bounds one attempt (default 5s).
	Timeout time.Duration
	// Attempts is how many times a failing delivery is tried (default 5).
	Attempts int
	// Backoff is the wait before the first retry, doubled after each, up to
	// 30 times its value (default 1s).
	Backoff time.Duration
	// Queue is how many events wait per webhook before new ones are dropped
	// and logged (default 256).
	Queue int
	// Client sends the requests (default a new http.Client).
	Client *http.Client
	// Logger reports failed deliveries (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, registers MetricDeliveries.
	Registerer prometheus.Registerer
}

// MetricDeliveries counts webhook deliveries by outcome: "delivered",
// "failed" (after every attempt) or "dropped" (the webhook's queue was
// full).
const MetricDeliveries = "vigil_webhook_deliveries_total"

// Notifier delivers events to webhooks in the background, in order per
// webhook, one goroutine each, so a slow receiver delays only itself.
type Notifier struct {
	opts       Options
	deliveries *prometheus.CounterVec // nil without Options.Registerer
	sinks      []*sink
	wg         sync.WaitGroup
	cancel     context.CancelFunc
	closeMu    sync.Mutex
	closed     bool
}

type sink struct {
	hook  Webhook
	queue chan Event
}

// New validates hooks and starts a Notifier for them.
func New(hooks []Webhook, opts Options) (*Notifier, error) {
	for _, h := range hooks {
		if err := h.Validate(); err != nil {
			return nil, err
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.Queue <= 0 {
		opts.Queue = 256
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{opts: opts, cancel: cancel}
	if opts.Registerer != nil {
		n.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDeliveries,
			Help: "Webhook deliveries of rollout transitions by outcome: delivered, failed after every attempt, or dropped from a full queue.",
		}, []string{"outcome"})
		if err := opts.Registerer.Register(n.deliveries); err != nil {
			cancel()
			return nil, fmt.Errorf("register %s: %w", MetricDeliveries, err)
		}
	}
	for _, h := range hooks {
		s := &sink{hook: h, queue: make(chan Event, opts.Queue)}
		n.sinks = append(n.sinks, s)
		n.wg.Add(1)
		go n.run(ctx, s)
	}
	return n, nil
}

// Notify queues e for every webhook without waiting. It never blocks the
// rollout loop: when a webhook's queue is full the event is dropped for it
// and logged.
func (n *Notifier) Notify(e Event) {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return
	}
	for _, s := range n.sinks {
		select {
		case s.queue <- e:
		default:
			n.count("dropped")
			n.opts.Logger.Warn("webhook queue full; transition not sent",
				"webhook", redactString(s.hook.URL), "flag", e.Flag, "to", e.To)
		}
	}
}

// Close stops taking events and waits until the queued ones are delivered
// or ctx is done, when deliveries in progress are cancelled.
func (n *Notifier) Close(ctx context.Context) error {
	n.closeMu.Lock()
	if !n.closed {
		n.closed = true
		for _, s := range n.sinks {
			close(s.queue)
		}
	}
	n.closeMu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return fmt.Errorf("close notifier: %w", ctx.Err())
	}
}

func (n *Notifier) run(ctx context.Context, s *sink) {
	defer n.wg.Done()
	for e := range s.queue {
		if err := Deliver(ctx, s.hook, e, n.opts); err != nil {
			n.count("failed")
			n.opts.Logger.Error("webhook delivery failed", "flag", e.Flag, "to", e.To, "err", err)
			continue
		}
		n.count("delivered")
	}
}

// count records a delivery's outcome.
func (n *Notifier) count(outcome string) {
	if n.deliveries != nil {
		n.deliveries.WithLabelValues(outcome).Inc()
	}
}

// permanentError is a delivery failure that retrying cannot fix.
type permanentError struct{ error }

// Deliver sends e to hook, retrying network errors, timeouts, 429 and 5xx
// answers with exponential backoff, and returns the last error once
// opts.Attempts are spent or ctx is done. Options must have been filled in
// by New or set in full.
func Deliver(ctx context.Context, hook Webhook, e Event, opts Options) error {
	body, err := Body(hook.Format, e)
	if err != nil {
		return err
	}
	wait := opts.Backoff
	for attempt := 1; ; attempt++ {
		err = post(ctx, hook, body, opts)
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) || attempt >= opts.Attempts {
			return fmt.Errorf("webhook %s: attempt %d of %d: %w", redactString(hook.URL), attempt, opts.Attempts, err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("webhook %s: gave up after %d attempts: %w (last error: %v)", redactString(hook.URL), attempt, ctx.Err(), err)
		}
		wait = min(wait*2, opts.Backoff*30)
	}
}

func post(ctx context.Context, hook Webhook, body []byte, opts Options) error {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-controller")
	if hook.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(hook.Secret, body))
	}
	// Never follow a redirect, whatever the client would: it would send
	// the signed body to an address nobody configured.
	client := *opts.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		// The client's error repeats the URL, and with it any token in it.
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	case resp.StatusCode < 400:
		return permanentError{fmt.Errorf("status %s: webhooks do not follow redirects; configure the address it redirects to", resp.Status)}
	default:
		return permanentError{fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(msg)))}
	}
}

// Sign returns the signature header value of body under secret:
// "sha256=" and the hex HMAC-SHA256. Receivers compute the same over the raw
// body and compare in constant time.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature is Sign(secret, body), in constant time.
func Verify(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// Body renders e in format.
func Body(format Format, e Event) ([]byte, error) {
	switch format {
	case "", FormatJSON:
		return json.Marshal(e)
	case FormatSlack:
		return json.Marshal(map[string]string{"text": SlackText(e)})
	}
	return nil, fmt.Errorf("webhook format %q must be json or slack", format)
}

// SlackText is a transition as one Slack message in mrkdwn.
func SlackText(e Event) string {
	var b strings.Builder
	icon := map[rollout.Phase]string{
		rollout.RolledBack:  ":rotating_light:",
		rollout.Promoted:    ":white_check_mark:",
		rollout.Paused:      ":double_vertical_bar:",
		rollout.Aborted:     ":no_entry:",
		rollout.Progressing: ":arrow_forward:",
	}[e.To]
	if icon == "" {
		icon = ":information_source:"
	}
	fmt.Fprintf(&b, "%s *%s*: %s → %s at %v%% (by %s)\n%s", icon, e.Flag, e.From, e.To, e.Percent, e.Actor, e.Reason)
	if v := e.Evidence; v != nil && v.Summary != "" {
		fmt.Fprintf(&b, "\nverdict: %s: %s", v.Outcome, v.Summary)
	}
	return b.String()
}

// redact hides credentials that webhook URLs carry, such as Slack's path
// token, so that logs and errors never show them.
func redact(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/…"
}

func redactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return redact(u)
}
