package sdk

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/baggage"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// pinPrefix starts the baggage member that pins a flag: "vigil.flag.<key>".
// Flag keys are letters, digits, '.', '_' and '-', all valid in a W3C
// baggage key, so the member name never needs escaping.
const pinPrefix = "vigil.flag."

// Baggage member properties of a pin.
const (
	pinPropReason = "reason"
	pinPropUnit   = "unit"
)

// pin is one flag's variant fixed for the rest of a request.
type pin struct {
	name    string // baggage member name
	variant string
	// reason is the reason the pinning service evaluated.
	reason flag.Reason
	// unit is flag.Hash(salt, unit key): a pin applies only to the unit it
	// was made for, so that a request that evaluates a flag for several
	// units does not hand one unit's variant to another. The hash, not the
	// key, travels, because unit keys are usually personal data.
	unit uint32
}

func (p *pin) member() (baggage.Member, error) {
	reason, err := baggage.NewKeyValuePropertyRaw(pinPropReason, string(p.reason))
	if err != nil {
		return baggage.Member{}, err
	}
	unit, err := baggage.NewKeyValuePropertyRaw(pinPropUnit, strconv.FormatUint(uint64(p.unit), 16))
	if err != nil {
		return baggage.Member{}, err
	}
	return baggage.NewMemberRaw(p.name, p.variant, reason, unit)
}

// parsePin reads a pin from a baggage member. Baggage comes from outside the
// process, so anything unexpected means no pin.
func parsePin(m baggage.Member) (pin, bool) {
	if m.Key() == "" || m.Value() == "" {
		return pin{}, false
	}
	p := pin{name: m.Key(), variant: m.Value()}
	var haveReason, haveUnit bool
	for _, prop := range m.Properties() {
		v, _ := prop.Value()
		switch prop.Key() {
		case pinPropReason:
			switch r := flag.Reason(v); r {
			case flag.ReasonSplit, flag.ReasonTargetingMatch, flag.ReasonDefault, flag.ReasonDisabled:
				p.reason, haveReason = r, true
			}
		case pinPropUnit:
			u, err := strconv.ParseUint(v, 16, 32)
			p.unit, haveUnit = uint32(u), err == nil
		}
	}
	return p, haveReason && haveUnit
}

// baggageKey is the context key under which OpenTelemetry keeps baggage. It
// is unexported by the otel module; a probe context learns it from the one
// lookup baggage.FromContext makes. A scope answers that key with the
// incoming baggage plus its pins, so that whatever propagates baggage from a
// request's context (otelhttp, a propagator's Inject) carries the pins made
// during the request without the handler passing a new context around.
var baggageKey = func() any {
	p := keyProbe{Context: context.Background()}
	baggage.FromContext(&p)
	return p.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}
