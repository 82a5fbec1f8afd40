// Package rollout is the rollout state machine: the pure decisions that move a
// flag's treatment percentage through the steps of its plan, hold it, pause
// it at gates and roll it back.
//
// Nothing here does I/O or reads a clock. Step turns a State, the judge's
// observation for one tick and the time into a new State and a list of
// Actions; Apply does the same for a person's command. The caller (the
// controller loop, the API) persists the State and carries out the Actions
// in one store transaction, so a decision is taken once and every timer is
// derived from timestamps kept in the State.
package rollout
