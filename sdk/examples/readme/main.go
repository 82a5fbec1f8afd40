// Command readme is the SDK example shown in the repository's README, kept
// here so that it compiles; a test in internal/e2e/readme checks that the README
// shows exactly the lines between the markers.
package main

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/vigil-dev/vigil/sdk"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	// README:begin
	client, err := sdk.New(ctx, sdk.Config{
		ServerURL: "http://vigil:8080",
		Token:     os.Getenv("VIGIL_TOKEN"), // an sdk token
	})
	if err != nil {
		return err
	}
	defer client.Close()
	http.Handle("/checkout", client.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := sdk.EvalContext{Key: r.Header.Get("X-User")}
		if client.Bool(r.Context(), "new-checkout", user, false) {
			// the new code path
		}
	})))
	// README:end
	return http.ListenAndServe(":8081", nil)
}
