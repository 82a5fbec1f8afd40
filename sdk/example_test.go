package sdk_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/vigil-dev/vigil/sdk"
)

// A service evaluates a flag inside the middleware's request scope. In
// production Config has ServerURL and Token instead of a flags file.
func Example() {
	dir, _ := os.MkdirTemp("", "vigil-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "flags.yaml")
	os.WriteFile(path, []byte(`flags:
  - key: new-checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets: [{variant: on, units: [qa-1]}]
    rollout: {percent: 0}
`), 0o600)

	client, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	handler := client.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		on, detail := client.BoolDetail(r.Context(), "new-checkout", sdk.EvalContext{Key: user}, false)
		fmt.Fprintf(w, "%s: %v (%s)", user, on, detail.Reason)
	}))
	for _, user := range []string{"qa-1", "alice"} {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?user="+user, nil))
		fmt.Println(rec.Body.String())
	}
	// Output:
	// qa-1: true (targeting_match)
	// alice: false (split)
}
