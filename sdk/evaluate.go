package sdk

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// result is an evaluation on its way to the caller.
type result struct {
	d flag.Detail
	// cohort is the reason the cohort metrics carry: d.Reason, or for a
	// pinned variant the reason the pinning service evaluated.
	cohort flag.Reason
	// pinned is set when the variant came from baggage.
	pinned bool
	scope  *Scope
	meta   *flagMeta
}

// fail turns r into the caller's default: a type mismatch when the flag
// served a variant of the wrong type, otherwise the error already in r.
func (r *result) fail() {
	if r.d.Variant == "" {
		return
	}
	r.d.Variant, r.d.Value, r.pinned = "", nil, false
	r.d.Reason, r.d.ErrorType = flag.ReasonError, flag.ErrorTypeMismatch
	r.cohort = flag.ReasonError
}

// resolve evaluates key from memory and applies a pinned variant. It takes
// no lock and does not allocate unless ctx carries baggage or a scope.
func (c *Client) resolve(ctx context.Context, key string, ec flag.Context, r *result) {
	st := c.store.load()
	r.scope = scopeFrom(ctx)
	if st == nil {
		r.d = flag.Detail{Key: key, Reason: flag.ReasonError, ErrorType: flag.ErrorProviderNotReady}
		r.cohort = r.d.Reason
		return
	}
	r.meta = st.meta[key]
	if r.meta == nil {
		st.snap.EvaluateTo(key, ec, &r.d) // flag_not_found
		r.cohort = r.d.Reason
		return
	}
	r.meta.flag.EvaluateTo(ec, &r.d)
	r.cohort = r.d.Reason
	if !c.pinning || r.d.Reason == flag.ReasonDisabled {
		// A flag disabled here is a kill switch: it wins over any pin.
		return
	}
	var p pin
	var ok bool
	if r.scope != nil {
		p, ok = r.scope.lookupPin(r.meta, ec.Key)
	} else if b := baggage.FromContext(ctx); b.Len() > 0 {
		if p, ok = parsePin(b.Member(r.meta.pinName)); ok {
			ok = p.unit == flag.Hash(r.meta.salt, ec.Key)
		}
	}
	if !ok {
		return
	}
	v, exists := r.meta.values[p.variant]
	if !exists {
		return
	}
	r.d.Value, r.d.Variant, r.d.Reason, r.d.ErrorType = v, p.variant, ReasonPinned, ""
	r.cohort, r.pinned = p.reason, true
}

// observe registers the result with the request scope, pins it, and tags
// the recording span in ctx.
func (c *Client) observe(ctx context.Context, r *result, unit string) {
	if r.scope != nil && r.d.Tracked && r.d.Variant != "" && r.meta != nil {
		pinned := c.pinning && !r.pinned && r.d.Reason != flag.ReasonError
		r.scope.add(r.meta, r.d.Variant, r.cohort, unit, pinned)
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs,
		attribute.String(AttrKey, r.d.Key),
		attribute.String(AttrProviderName, ProviderName),
		attribute.String(AttrReason, string(r.d.Reason)),
	)
	if r.d.Variant != "" {
		attrs = append(attrs, attribute.String(AttrVariant, r.d.Variant))
	}
	if r.d.Version != 0 {
		attrs = append(attrs, attribute.String(AttrVersion, strconv.FormatInt(r.d.Version, 10)))
	}
	if r.d.ErrorType != "" {
		attrs = append(attrs, attribute.String(AttrErrorType, string(r.d.ErrorType)))
	}
	if c.cfg.RecordUnitKey && unit != "" {
		attrs = append(attrs, attribute.String(AttrContextID, unit))
	}
	span.AddEvent(SpanEventEvaluation, trace.WithAttributes(attrs...))
	if r.d.Variant != "" {
		span.SetAttributes(attribute.String(SpanAttributePrefix+r.d.Key, r.d.Variant))
	}
}

// SpanAttributePrefix starts the span attribute that an evaluation sets to
// the variant served, "vigil.flag.<key>", so that traces can be filtered by
// flag and variant.
const SpanAttributePrefix = "vigil.flag."
