package sdk

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/baggage"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// FuzzIncomingBaggage evaluates a flag under arbitrary incoming baggage, as
// any client can send: the result is always one of the flag's variants, and
// a pin is honoured only for the unit it names.
func FuzzIncomingBaggage(f *testing.F) {
	f.Add("vigil.flag.checkout=on;reason=split;unit=5b3c4e8a", "user-1")
	f.Add("vigil.flag.checkout=on;reason=targeting_match;unit=0;unit=1", "")
	f.Add("vigil.flag.checkout=%20;reason=split,other=x", "u")
	c := staticClient(f, nil, rollout("checkout", 0, true))
	f.Fuzz(func(t *testing.T, header, unitKey string) {
		b, err := baggage.Parse(header)
		if err != nil {
			return
		}
		for _, scoped := range []bool{false, true} {
			ctx := baggage.ContextWithBaggage(context.Background(), b)
			if scoped {
				var s *Scope
				ctx, s = c.StartScope(ctx)
				defer s.End(nil)
			}
			_, d := c.BoolDetail(ctx, "checkout", EvalContext{Key: unitKey}, false)
			switch d.Variant {
			case "off":
			case "on":
				if d.Reason != ReasonPinned {
					t.Fatalf("on without a pin: %+v", d)
				}
				p, ok := parsePin(b.Member("vigil.flag.checkout"))
				if !ok || p.unit != flag.Hash("checkout", unitKey) {
					t.Fatalf("pin honoured for another unit: %q %+v", header, d)
				}
			default:
				if unitKey != "" || d.ErrorType != flag.ErrorTargetingKeyMissing {
					t.Fatalf("unexpected result %+v for %q", d, header)
				}
			}
		}
	})
}
