package openfeature_test

import (
	"log"
	"net/http"

	of "github.com/open-feature/go-sdk/openfeature"

	"github.com/vigil-dev/vigil/sdk"
	vigilof "github.com/vigil-dev/vigil/sdk/openfeature"
)

// A service that evaluates flags through OpenFeature, in process, with the
// SDK middleware making each request a cohort scope.
func Example() {
	p := vigilof.New(sdk.Config{ServerURL: "http://vigil:8080", Token: "vgl_..."})
	if err := of.SetProviderAndWait(p); err != nil {
		log.Printf("vigil not ready, serving defaults: %v", err)
	}
	defer of.Shutdown()
	flags := of.NewDefaultClient()

	checkout := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unit := of.NewEvaluationContext(r.Header.Get("X-User"), map[string]any{"plan": r.Header.Get("X-Plan")})
		page := "old checkout"
		if flags.Boolean(r.Context(), "new-checkout", false, unit) {
			page = "new checkout"
		}
		w.Write([]byte(page))
		flags.Track(r.Context(), "checkout.completed", unit, of.NewTrackingEventDetails(1))
	})
	if c := p.Client(); c != nil {
		http.Handle("/checkout", c.Middleware(checkout))
	}
}
