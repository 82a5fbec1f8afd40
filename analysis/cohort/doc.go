// Package cohort reads each rollout's treatment and control counts through
// PromQL: a Provider carries the queries (a Prometheus-compatible HTTP API,
// or the embedded engine of package metricstore), and a Reader renders one
// query per metric for every due rollout at once and splits the answer into
// the judge's counts.
package cohort
