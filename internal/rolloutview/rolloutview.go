// Package rolloutview renders rollouts for terminals: the one progress bar
// that `vigil rollout status` and `vigil demo` both draw.
package rolloutview

import (
	"fmt"
	"strings"

	"github.com/vigil-dev/vigil/controller/rollout"
)

// Progress draws the plan's steps with the ones passed filled in, the
// current one ringed and gates marked with a bar sign, such as
// "● 1% ─ ◉ 5% ─ ‖○ 50% ─ ○ 100%".
func Progress(s rollout.State) string {
	var b strings.Builder
	for i, p := range s.Plan.Steps {
		if i > 0 {
			b.WriteString(" ─ ")
		}
		mark := "○"
		switch {
		case s.Phase == rollout.Promoted || i < s.Step:
			mark = "●"
		case i == s.Step && s.Phase != rollout.RolledBack && s.Phase != rollout.Aborted:
			mark = "◉"
		}
		gate := ""
		for _, g := range s.Plan.Gates {
			if g == p {
				gate = "‖"
			}
		}
		fmt.Fprintf(&b, "%s%s %v%%", gate, mark, p)
	}
	return b.String()
}
