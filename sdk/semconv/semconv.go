// Package semconv names the SDKs' cohort metrics, their attributes and the
// evaluation span event: the contract between the services that record
// them and the judge, dashboards and alerts that read them. It has no
// dependencies, so the controller's generators import it without the SDK.
// Do not rename: every SDK (Go, TypeScript) writes these names.
package semconv

// The cohort metrics as the SDKs record them through OpenTelemetry.
const (
	MetricRequests        = "feature_flag.requests"
	MetricRequestDuration = "feature_flag.request.duration"
	MetricEvents          = "feature_flag.events"
)

// Attribute keys of the cohort metrics and the span event.
const (
	AttrKey       = "feature_flag.key"
	AttrVariant   = "feature_flag.result.variant"
	AttrReason    = "feature_flag.result.reason"
	AttrErrorType = "error.type"
	AttrEventName = "feature_flag.event.name"
	// AttrUnitBucket is the unit's bucket (flag.UnitBucket) as a decimal
	// string "0" to "7". It is set on the cohort metrics of tracked flags
	// for units placed by the split only, never on the span event.
	AttrUnitBucket = "vigil.unit_bucket"
)

// The cohort metrics and their labels as Prometheus names them, after the
// OpenTelemetry exporter's translation (dots to underscores, unit and
// _total suffixes).
const (
	// PromRequests counts flag-guarded requests; failed ones carry
	// LabelErrorType.
	PromRequests = "feature_flag_requests_total"
	// PromRequestDuration is the request latency histogram in seconds; its
	// series are PromRequestDuration + "_bucket", "_sum" and "_count".
	PromRequestDuration = "feature_flag_request_duration_seconds"

	LabelKey        = "feature_flag_key"
	LabelVariant    = "feature_flag_result_variant"
	LabelReason     = "feature_flag_result_reason"
	LabelErrorType  = "error_type"
	LabelUnitBucket = "vigil_unit_bucket"
)

// ReasonSplit is the evaluation reason of units placed by the rollout's
// split: the only ones the judge compares, since targeted units are not a
// random sample.
const ReasonSplit = "split"

// DurationBuckets are the boundaries, in seconds, of the request duration
// histogram: HTTP latencies from 5 ms to 10 s.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 7.5, 10}
