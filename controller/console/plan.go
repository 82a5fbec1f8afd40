package console

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// PlanBody is the body of POST /api/v1/console/flags/{key}/plan: the
// overrides a start would be given, as the start request's "plan".
type PlanBody struct {
	Plan *plan.Spec `json:"plan,omitempty"`
}

// PlanPreview answers POST /api/v1/console/flags/{key}/plan: the plan a
// start with those overrides would follow.
type PlanPreview struct {
	Key string `json:"key"`
	// Written is the plan in the flag's definition, nil when it has none.
	Written *plan.Spec `json:"written"`
	// Plan is Written and the overrides laid over the defaults.
	Plan plan.Plan `json:"plan"`
}

// previewPlan resolves the plan a start of the flag would follow, by the
// same steps as the start (the flag's plan, then the overrides, over the
// defaults, validated by controller/plan), and refuses a bad one as the
// start would: 400 naming the field, such as plan.steps[1]. The console's
// start dialog shows what a start will do with it before anyone confirms,
// and the flag's page the plan its next rollout follows. It changes
// nothing, so readers may ask it.
func previewPlan(h *server.Host) gin.HandlerFunc {
	return func(c *gin.Context) {
		var body PlanBody
		if !server.BindJSON(c, &body) {
			return
		}
		f, ok := storedFlag(c, h, "for its plan")
		if !ok {
			return
		}
		written, p, err := resolvePlan(f, body.Plan)
		if err != nil {
			server.FailValidation(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, PlanPreview{Key: f.Key, Written: written, Plan: p})
	}
}

// resolvePlan is the plan a start of f with overrides would follow, and the
// plan f writes; its errors are *flag.FieldError values placed where they
// were written: rollout.plan in the flag, plan in the overrides.
func resolvePlan(f flag.Flag, overrides *plan.Spec) (*plan.Spec, plan.Plan, error) {
	written, err := plan.OfFlag(f)
	if err != nil {
		return nil, plan.Plan{}, err
	}
	p, err := plan.Resolve(written, overrides)
	if err != nil {
		return written, plan.Plan{}, plan.Within(err, f.Key, "plan")
	}
	return written, p, nil
}
