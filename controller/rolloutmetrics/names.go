// Package rolloutmetrics names the metrics the rollout loop exports about
// its rollouts and its judge: the contract that the generated dashboards and
// alert rules read. The loop (controller/runner) records them; the
// generators import these names without the controller's dependencies.
// Do not rename.
package rolloutmetrics

// The metric names.
const (
	Percent               = "vigil_rollout_percent"
	State                 = "vigil_rollout_state"
	Transitions           = "vigil_rollout_transitions_total"
	Verdicts              = "vigil_analysis_verdicts_total"
	Evidence              = "vigil_analysis_evidence"
	EvidenceThreshold     = "vigil_analysis_evidence_threshold"
	ProviderErrors        = "vigil_provider_errors_total"
	ProviderQueryDuration = "vigil_provider_query_duration_seconds"
	// Leader is 1 on the replica that holds the rollout loop's lease.
	Leader = "vigil_rollout_leader"
)

// OverallCheck is the metric label of the judge's overall verdict and of the
// mean e-value that its threshold applies to.
const OverallCheck = "all"
