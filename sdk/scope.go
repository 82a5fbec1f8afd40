package sdk

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/baggage"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// Scope is one unit of work (an HTTP request, a queue message, a job) whose
// outcome is recorded in the cohort metrics of every tracked flag evaluated
// with its context. The HTTP middlewares create one per request; other work
// uses Client.StartScope and ends it with End or Client.Observe.
type Scope struct {
	ctx    scopeContext
	client *Client
	// start is when the scope began, as a duration since client.epoch.
	start time.Duration
	// incoming is the baggage of the context the scope started in.
	incoming baggage.Baggage

	mu    sync.Mutex
	ended bool
	// errType is the error.type of the first error reported.
	errType string
	// n counts the entries. add, under mu, writes an entry before it
	// stores n and never changes it after, so that evaluations read the
	// inline entries without mu; more is read under mu.
	n       atomic.Int32
	entries [4]entry
	more    []entry
	// hasPins is set with the first pin, so that evaluations in a scope
	// without pins look for none without taking mu.
	hasPins atomic.Bool
	// bag caches the context value that carries incoming plus pins; nil
	// when it must be rebuilt.
	bag any
}

// entry is a tracked flag evaluated in a scope for a unit, and its pin. It
// is kept small because a scope holds four inline and is allocated per
// request.
type entry struct {
	*answer
	// pinned marks an entry this scope pins for the rest of the request;
	// the unit's hash for the baggage member is computed when one is
	// needed, not on every evaluation.
	pinned bool
	// unitBucket is unit's bucket when the split placed it, else -1, so
	// that the other flags of the request, mostly evaluated for the same
	// unit, do not hash it again.
	unitBucket int8
	unit       string
}

type scopeKey struct{}

// scopeContext is the context a scope hands out. It answers the scope key
// and the baggage key itself and passes everything else to its parent.
type scopeContext struct {
	context.Context
	s *Scope
}

func (c *scopeContext) Value(key any) any {
	switch key {
	case scopeKey{}:
		return c.s
	case baggageKey:
		if v := c.s.baggageValue(); v != nil {
			return v
		}
	}
	return c.Context.Value(key)
}

func scopeFrom(ctx context.Context) *Scope {
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	return s
}

// StartScope begins a unit of work that is not an HTTP request served by
// the middleware. Evaluate flags with the returned context, then call
// s.End(err) or c.Observe(ctx, err, d) once.
func (c *Client) StartScope(ctx context.Context) (context.Context, *Scope) {
	s := &Scope{}
	c.initScope(s, ctx)
	return &s.ctx, s
}

func (c *Client) initScope(s *Scope, parent context.Context) {
	s.ctx = scopeContext{Context: parent, s: s}
	s.client = c
	s.start = time.Since(c.epoch)
	s.incoming = baggage.FromContext(parent)
}

// End records the scope's outcome with the time since StartScope. A non-nil
// err marks it failed (see ReportError for the error.type). Only the first
// End, EndStatus or Observe of a scope records.
func (s *Scope) End(err error) {
	s.finish(errorType(err), s.elapsed())
}

// EndStatus records the outcome of an HTTP request: a 5xx status marks it
// failed with error.type set to the status code, such as "503".
func (s *Scope) EndStatus(status int) {
	s.finish(statusErrorType(status), s.elapsed())
}

func (s *Scope) elapsed() time.Duration { return time.Since(s.client.epoch) - s.start }

// Observe records the outcome of the scope in ctx with a duration the
// caller measured, for work that times itself. It does nothing when ctx has
// no scope; it ends the scope, so a later End does nothing.
func (c *Client) Observe(ctx context.Context, err error, d time.Duration) {
	if s := scopeFrom(ctx); s != nil {
		s.finish(errorType(err), d)
	}
}

// ReportError marks the scope in ctx failed, for handlers that return an
// error response without a 5xx status, or that want a more precise
// error.type than the status code. The error.type is the string returned by
// an ErrorType() string method of err (or of an error it wraps), else the
// Go type of the first error in err's chain that fmt.Errorf did not make
// (such as "*net.OpError"), else "error". The first error reported wins.
// Without a scope in ctx it does nothing.
func ReportError(ctx context.Context, err error) {
	s := scopeFrom(ctx)
	if s == nil || err == nil {
		return
	}
	t := errorType(err)
	s.mu.Lock()
	if s.errType == "" {
		s.errType = t
	}
	s.mu.Unlock()
}

// Track counts a business event, such as "checkout.completed", in the
// cohort of every tracked flag evaluated so far in ctx's scope: counter
// feature_flag.events with attribute feature_flag.event.name. Without a
// scope in ctx it does nothing.
func (c *Client) Track(ctx context.Context, name string) {
	s := scopeFrom(ctx)
	if s == nil {
		return
	}
	var buf [8]entry
	for _, e := range s.snapshotEntries(buf[:0]) {
		c.events.Add(ctx, 1, c.cohorts.get(cohortKey{key: e.meta.key, variant: e.variant, reason: e.reason, bucket: e.bucket, event: name}).add...)
	}
}

func (s *Scope) snapshotEntries(buf []entry) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf = append(buf, s.inline()...)
	return append(buf, s.more...)
}

// add registers the result of m's tracked flag for unit, variant in the
// cohort of reason, and pins it if pinned. The first result of a flag in a
// scope is the one recorded and pinned.
func (s *Scope) add(m *flagMeta, variant string, reason flag.Reason, unit string, pinned bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.find(m) != nil {
		return
	}
	e := entry{pinned: pinned, unitBucket: -1, unit: unit}
	if reason == flag.ReasonSplit {
		e.unitBucket = s.unitBucket(unit)
	}
	e.answer = m.answer(variant, reason, int(e.unitBucket))
	if e.pinned && s.incoming.Len() > 0 && s.incoming.Member(e.meta.pinName).Key() != "" {
		// Pinned upstream but not honoured here (another unit, or a
		// variant this service lacks): leave the upstream pin to travel.
		e.pinned = false
	}
	if n := int(s.n.Load()); n < len(s.entries) {
		s.entries[n] = e
	} else {
		s.more = append(s.more, e)
	}
	s.n.Add(1)
	if e.pinned {
		s.hasPins.Store(true)
		s.bag = nil
	}
}

// unitBucket returns unit's bucket, from an earlier entry of the unit when
// there is one; the caller holds mu.
func (s *Scope) unitBucket(unit string) int8 {
	for _, e := range s.inline() {
		if e.unitBucket >= 0 && e.unit == unit {
			return e.unitBucket
		}
	}
	return int8(flag.UnitBucket(unit))
}

// inline returns the entries held in the scope itself; see n.
func (s *Scope) inline() []entry { return s.entries[:min(int(s.n.Load()), len(s.entries))] }

// find returns the entry of m's flag; the caller holds mu.
func (s *Scope) find(m *flagMeta) *entry {
	if e := findIn(s.inline(), m); e != nil {
		return e
	}
	return findIn(s.more, m)
}

// findIn returns the entry of m's flag in entries. An update of the flag
// during the request gives it a new flagMeta, so keys are compared too.
func findIn(entries []entry, m *flagMeta) *entry {
	for i := range entries {
		if e := &entries[i]; e.meta == m || e.meta.key == m.key {
			return e
		}
	}
	return nil
}

// lookupPin finds the pin of a flag for a unit: one this scope made for
// the same unit, else one that came in with the request for the unit's
// hash under salt.
func (s *Scope) lookupPin(m *flagMeta, unit string) (pin, bool) {
	if s.hasPins.Load() {
		e := findIn(s.inline(), m)
		if e == nil && int(s.n.Load()) > len(s.entries) {
			s.mu.Lock()
			if e = findIn(s.more, m); e != nil {
				// more may move when it grows: copy the entry out.
				c := *e
				e = &c
			}
			s.mu.Unlock()
		}
		if e != nil && e.pinned && e.unit == unit && e.meta.salt == m.salt {
			return pin{name: m.pinName, variant: e.variant, reason: e.reason}, true
		}
	}
	if s.incoming.Len() == 0 {
		return pin{}, false
	}
	p, ok := parsePin(s.incoming.Member(m.pinName))
	if !ok || p.unit != flag.Hash(m.salt, unit) {
		return pin{}, false
	}
	return p, true
}

// baggageValue returns what the context holds under the baggage key for a
// scope with pins, or nil when the scope made none.
func (s *Scope) baggageValue() any {
	if !s.hasPins.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bag != nil {
		return s.bag
	}
	b := s.incoming
	add := func(e *entry) {
		if !e.pinned {
			return
		}
		p := pin{name: e.meta.pinName, variant: e.variant, reason: e.reason, unit: flag.Hash(e.meta.salt, e.unit)}
		m, err := p.member()
		if err != nil {
			s.client.log.Warn("vigil: cannot pin flag in baggage", "member", p.name, "err", err)
			return
		}
		if nb, err := b.SetMember(m); err == nil {
			b = nb
		}
	}
	for i := range s.inline() {
		add(&s.entries[i])
	}
	for i := range s.more {
		add(&s.more[i])
	}
	s.bag = baggage.ContextWithBaggage(context.Background(), b).Value(baggageKey)
	return s.bag
}

// finish records the scope once.
func (s *Scope) finish(errType string, d time.Duration) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	if s.errType != "" {
		errType = s.errType
	}
	s.mu.Unlock()
	// Once ended, a scope's entries no longer change: add refuses new ones.
	c := s.client
	secs := d.Seconds()
	ctx := s.ctx.Context
	for _, e := range s.inline() {
		c.record(ctx, e.answer, errType, secs)
	}
	for _, e := range s.more {
		c.record(ctx, e.answer, errType, secs)
	}
}

// record counts one request of a's cohort and records its duration.
func (c *Client) record(ctx context.Context, a *answer, errType string, secs float64) {
	o := a.ok
	if o == nil || errType != "" {
		o = c.cohorts.get(cohortKey{key: a.meta.key, variant: a.variant, reason: a.reason, bucket: a.bucket, errType: errType})
	}
	o.requests.Add(1)
	c.duration.Record(ctx, secs, o.record...)
}

// errorTyper is implemented by errors that name their own error.type.
type errorTyper interface {
	ErrorType() string
}

// errorType derives a low-cardinality error.type from err.
func errorType(err error) string {
	if err == nil {
		return ""
	}
	var et errorTyper
	if errors.As(err, &et) {
		if t := et.ErrorType(); t != "" {
			return t
		}
	}
	// Wrapping with fmt.Errorf says nothing about the kind of failure:
	// look through it for the first error of a meaningful type.
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch t := fmt.Sprintf("%T", e); t {
		case "*errors.errorString", "*fmt.wrapError":
		default:
			if t == "*fmt.wrapErrors" || t == "*errors.joinError" {
				return "error"
			}
			return t
		}
	}
	return "error"
}

// statusErrorType is the error.type of an HTTP status: the code for 5xx,
// empty otherwise.
func statusErrorType(status int) string {
	if status < 500 || status > 599 {
		return ""
	}
	return statusCodes[status-500]
}

var statusCodes = func() (s [100]string) {
	for i := range s {
		s[i] = strconv.Itoa(500 + i)
	}
	return s
}()
