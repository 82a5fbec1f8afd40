package console

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/controller/store"
)

// Look is the judge's verdict at one look at a rollout, with the rollout's
// place when it was given.
type Look = rollout.Look

// Looks is the body of GET /api/v1/console/rollouts/{key}/looks.
type Looks struct {
	Key string `json:"key"`
	// Looks are oldest first, since the rollout's current start.
	Looks []Look `json:"looks"`
}

// looks answers the looks at one rollout since its current start, as the
// rollout loop stored them: every replica answers the same.
func looks(st store.Store, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		key := c.Param("key")
		fail := func(err error) {
			if store.Unavailable(err) {
				server.FailUnavailable(c, "the store is unavailable; retry")
				return
			}
			log.Error("console: unreadable looks", "key", key, "err", err)
			server.Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
		}
		rec, err := st.Rollout(ctx, key)
		switch {
		case err == nil:
		case store.Unavailable(err):
			fail(err)
			return
		default:
			// No rollout yet: no looks, whether or not the flag exists.
			c.JSON(http.StatusOK, Looks{Key: key, Looks: []Look{}})
			return
		}
		s, err := rollout.DecodeState(key, rec.State)
		if err != nil {
			fail(err)
			return
		}
		raws, err := st.RolloutLooks(ctx, key, s.StartedAt)
		if err != nil {
			fail(err)
			return
		}
		out := Looks{Key: key, Looks: make([]Look, 0, len(raws))}
		for _, raw := range raws {
			var l Look
			if err := json.Unmarshal(raw, &l); err != nil {
				fail(err)
				return
			}
			out.Looks = append(out.Looks, l)
		}
		c.Header("Cache-Control", "no-cache")
		c.JSON(http.StatusOK, out)
	}
}
