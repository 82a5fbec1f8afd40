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

// The loop's own cost, recorded by the replica that holds the lease: how
// long its ticks take, how much each does, and how big its reads of the
// metric source are. The store's latency per operation, writes included,
// is the server's vigil_store_duration_seconds.
const (
	// TickDuration is the time of one tick: the lease, catching up with
	// changed rollouts, reading, judging and committing the due ones.
	TickDuration = "vigil_rollout_tick_duration_seconds"
	// TickOverruns counts ticks that took longer than the loop's tick
	// interval: the looks that fell due meanwhile waited for the next.
	TickOverruns = "vigil_rollout_tick_overruns_total"
	// LooksDue counts the rollouts found due, summed over ticks; over
	// TickDuration's count, the rollouts due per tick.
	LooksDue = "vigil_rollout_looks_due_total"
	// LooksJudged counts the due rollouts whose counts the judge weighed
	// (those past their warm-up whose counts could be read).
	LooksJudged = "vigil_rollout_looks_judged_total"
	// ProviderQueryRollouts is the size of each batched read of the
	// metric source: the rollouts it read the counts of.
	ProviderQueryRollouts = "vigil_provider_query_rollouts"
)

// LabelRead tells apart, on ProviderQueryDuration and
// ProviderQueryRollouts, the reads that looks take (ReadLook) from those
// that catch new rollouts up before their first looks (ReadCatchUp), which
// read back to five minutes before each rollout's start and so cost more.
// ProviderErrors counts the looks' failed reads only: a failed catch-up
// leaves the look to catch up, and to count its failure if it persists.
const (
	LabelRead   = "read"
	ReadLook    = "look"
	ReadCatchUp = "catch-up"
)

// What the judge found at its latest look, per ratio check (labels flag and
// metric, the check's name): the evidence behind Evidence, so that
// dashboards and alerts judge a rollout by the judge's own numbers rather
// than by a definition of their own. Only the replica that holds the lease
// judges, so only its series are current; every series stays at its last
// value after the rollout ends, as the other rollout metrics do. A series
// whose quantity the verdict does not have (no events yet, no floor, no
// harm bound) is absent rather than 0.
const (
	// Edge is the latency edge in seconds that the check's counts and
	// interval refer to: the judge picks it from control's distribution
	// unless the plan names edges. Latency checks only.
	Edge = "vigil_analysis_edge_seconds"
	// CohortRate is each cohort's bad events per request since the rollout
	// began (errors, or requests slower than Edge); label cohort is
	// "treatment" or "control".
	CohortRate = "vigil_analysis_cohort_rate"
	// Ratio is the judge's estimate of treatment's rate over control's.
	// Where the check has an interval it is the likelihood's peak given
	// every look, each look's split weighed under that look's own share
	// and baseline, so it lies within [RatioLow, RatioHigh]; it can differ
	// from CohortRate's treatment over control, which mixes the steps in
	// the proportions traffic came in. Where the check has no interval it
	// is that ratio of the rates since the rollout began.
	Ratio = "vigil_analysis_ratio"
	// RatioLow is the low end of the always-valid confidence interval for
	// Ratio at level 1-alpha.
	RatioLow = "vigil_analysis_ratio_ci_low"
	// RatioHigh is its high end.
	RatioHigh = "vigil_analysis_ratio_ci_high"
	// Tolerance is the ratio the check tests against: evidence that the
	// ratio exceeds it fails the rollout.
	Tolerance = "vigil_analysis_tolerance"
	// HarmBound is the ratio the interval must lie below before the check
	// passes (the plan's maxRatio).
	HarmBound = "vigil_analysis_harm_bound"
	// FloorRatio is the ratio at which the difference between the cohorts
	// reaches the metric's practical floor at control's current rate: an
	// interval that lies below it passes, and only one wholly above both
	// it and Tolerance shows harm.
	FloorRatio = "vigil_analysis_floor_ratio"
	// Dispersion is the over-dispersion the check's evidence was divided
	// by (1 when events are as independent as the test assumes).
	Dispersion = "vigil_analysis_dispersion"
)

// The traffic split's check, per rollout (label flag): whether treatment
// gets the share of the split's requests the flag gives it.
const (
	// SplitExpected is treatment's share of the split's requests that the
	// flag's percent should give over the looks counted.
	SplitExpected = "vigil_analysis_split_expected_share"
	// SplitObserved is the share treatment got over those looks.
	SplitObserved = "vigil_analysis_split_observed_share"
	// SplitMismatch is 1 once the shares differ beyond chance: the cohorts
	// are not the split the flag makes, and the rollout holds every step.
	SplitMismatch = "vigil_analysis_split_mismatch"
)

// The label of CohortRate and its values.
const (
	// CohortLabel names the cohort of a CohortRate series.
	CohortLabel = "cohort"
	// Treatment is the treatment's cohort.
	Treatment = "treatment"
	// Control is the control's cohort.
	Control = "control"
)

// OverallCheck is the metric label of the judge's overall verdict and of the
// mean e-value that its threshold applies to.
const OverallCheck = "all"
