// Package vigilgin records Vigil's cohort metrics for gin handlers. It is a
// separate module so that services using the SDK without gin never pull gin.
package vigilgin

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/sdk"
)

// Middleware is sdk.Client.Middleware for gin: each request gets a scope, so
// tracked flags evaluated with c.Request.Context() are recorded in the
// cohort metrics when the request ends (failed on a 5xx status or an error
// reported with sdk.ReportError) and pinned in the request's baggage.
//
// Errors attached with c.Error do not mark the request failed by
// themselves: gin handlers attach them to 4xx responses too. Call
// sdk.ReportError for failures that do not produce a 5xx.
func Middleware(client *sdk.Client) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, scope := client.StartScope(c.Request.Context())
		c.Request = c.Request.WithContext(ctx)
		done := false
		defer func() {
			if !done {
				// A panic is on its way to gin's recovery, which answers 500.
				scope.EndStatus(http.StatusInternalServerError)
			}
		}()
		c.Next()
		done = true
		scope.EndStatus(c.Writer.Status())
	}
}
