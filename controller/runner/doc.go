// Package runner runs rollouts against a store: the loop that, at every
// interval, reads the cohorts' counts for all progressing rollouts in one
// batch, asks the judge and carries out the rollout state machine's decision
// in one store transaction; the commands people give through the API; the
// controller's Prometheus metrics; and the HTTP routes under
// /api/v1/rollouts.
//
// Only one process runs the loop against a store at a time: it holds a lease
// kept in the store and renews it at every tick. Every other replica serves
// the API, whose commands are transactions of their own.
package runner
