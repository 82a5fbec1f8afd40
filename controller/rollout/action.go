package rollout

// Action is something the caller must do, in the same store transaction
// that saves the new state: SetPercent, SetTracked, Audit or Notify.
type Action interface {
	action()
}

// SetPercent sets the flag's treatment percentage.
type SetPercent struct {
	Percent float64
}

// SetTracked turns the SDKs' cohort metrics for the flag on or off.
type SetTracked struct {
	Tracked bool
}

// Audit appends an entry to the audit log.
type Audit struct {
	Actor   string
	Message string
}

// Notify sends a transition to the webhooks. Unlike the others it happens
// after the transaction commits, since a webhook cannot be rolled back.
type Notify struct {
	Key        string
	Transition Transition
}

func (SetPercent) action() {}
func (SetTracked) action() {}
func (Audit) action()      {}
func (Notify) action()     {}
