package console

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/internal/explain"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// EvaluateBody is the body of POST /api/v1/console/flags/{key}/evaluate.
type EvaluateBody struct {
	// Unit is the unit's key, such as a user id.
	Unit string `json:"unit"`
	// Attributes are the unit's attributes that rules test.
	Attributes map[string]any `json:"attributes,omitempty"`
}

// evaluate answers which variant a unit gets of a stored flag and why, by
// the evaluation the SDKs run, with the unit's bucket beside the percent:
// what `vigil eval` prints. It is a POST so that unit keys, often user ids,
// stay out of URLs and the logs that keep them; it changes nothing.
func evaluate(h *server.Host) gin.HandlerFunc {
	return func(c *gin.Context) {
		var body EvaluateBody
		if !server.BindJSON(c, &body) {
			return
		}
		f, ok := storedFlag(c, h, "to evaluate")
		if !ok {
			return
		}
		snap, err := flag.NewSnapshot(f.Version, []flag.Flag{f})
		if err != nil {
			h.Logger.Error("console: compile stored flag", "key", f.Key, "err", err)
			server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, explain.Evaluate(snap, f.Key, flag.Context{Key: body.Unit, Attributes: body.Attributes}))
	}
}

// storedFlag reads the flag the route's key names. When it cannot, it
// answers the request itself (404 for no such flag, 503 while the store is
// unavailable, 500 logged with why) and returns false.
func storedFlag(c *gin.Context, h *server.Host, why string) (flag.Flag, bool) {
	key := c.Param("key")
	f, err := h.Store.Flag(c.Request.Context(), key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		server.Fail(c, http.StatusNotFound, fmt.Sprintf("flag %q does not exist", key), "key")
		return flag.Flag{}, false
	case store.Unavailable(err):
		server.FailUnavailable(c, "the store is unavailable; retry")
		return flag.Flag{}, false
	case err != nil:
		h.Logger.Error("console: read flag "+why, "key", key, "err", err)
		server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
		return flag.Flag{}, false
	}
	return f, true
}
