// Package judge decides, at every look of a rollout, whether a flag's
// treatment cohort is worse than its control cohort: arithmetic over the
// cohorts' cumulative counts, with a sequential test that stays valid
// however often it looks. It does no I/O; package cohort reads the counts.
package judge
