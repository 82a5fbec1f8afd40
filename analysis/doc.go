// Package analysis decides, at every tick of a rollout, whether the treatment
// cohort of a flag is worse than its control cohort. It reads cohort counts
// from a metric provider (a Prometheus-compatible HTTP API or the embedded
// engine) and judges them with a sequential test that stays valid however
// often it is checked.
package analysis
