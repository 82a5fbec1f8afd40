package judge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// explainCheck writes a check's one-line explanation, for example
// "treatment error rate 2.1% vs control 1.0% (ratio 2.1, 99% CI 1.4 to 3.2)
// exceeds tolerance 1.2: fail".
func explainCheck(cv CheckVerdict, c check) string {
	var b strings.Builder
	b.WriteString("treatment ")
	b.WriteString(subject(cv, c))
	b.WriteString(" ")
	b.WriteString(percent(cv.Treatment.Rate))
	if c.kind != checkRatio {
		fmt.Fprintf(&b, " against max %s", percent(cv.Bound))
		if c.kind == checkMaxP99 {
			fmt.Fprintf(&b, " (p99 at most %v)", c.metric.MaxP99)
		}
		ev := fmt.Sprintf("e-value %s of %s", number(cv.EValue), number(cv.Threshold))
		switch cv.Outcome {
		case Fail:
			fmt.Fprintf(&b, " exceeds it (%s): fail", ev)
		case Pass:
			fmt.Fprintf(&b, ", no evidence above it (%s): pass", ev)
		default:
			fmt.Fprintf(&b, ", no evidence above it yet (%s): inconclusive, %s", ev, cv.Reason)
		}
		return b.String()
	}
	fmt.Fprintf(&b, " vs control %s (", percent(cv.Control.Rate))
	if cv.Control.Rate > 0 {
		fmt.Fprintf(&b, "ratio %s", number(cv.Ratio))
	} else {
		b.WriteString("no control events")
	}
	if cv.CIHigh > 0 {
		fmt.Fprintf(&b, ", %s CI %s to %s", level(cv.CILevel), ciEnd(cv.CILow), ciEnd(cv.CIHigh))
	}
	b.WriteString(")")
	beyond := "above"
	if c.metric.Direction == LowerIsWorse {
		beyond = "below"
	}
	ev := fmt.Sprintf("e-value %s of %s", number(cv.EValue), number(cv.Threshold))
	switch cv.Outcome {
	case Fail:
		if beyond == "below" {
			fmt.Fprintf(&b, " is below tolerance %s: fail", number(cv.Tolerance))
		} else {
			fmt.Fprintf(&b, " exceeds tolerance %s: fail", number(cv.Tolerance))
		}
	case Pass:
		fmt.Fprintf(&b, ", no evidence %s tolerance %s (%s)", beyond, number(cv.Tolerance), ev)
		if cv.HarmBound > 0 {
			fmt.Fprintf(&b, " and the interval short of the harm bound %s", number(cv.HarmBound))
		}
		b.WriteString(": pass")
	default:
		fmt.Fprintf(&b, ", no evidence %s tolerance %s yet (%s): inconclusive, %s", beyond, number(cv.Tolerance), ev, cv.Reason)
	}
	return b.String()
}

// subject names what a check's rate counts.
func subject(cv CheckVerdict, c check) string {
	switch {
	case c.metric.Kind == KindErrorRate:
		return "error rate"
	case c.metric.Kind == KindLatency && cv.Edge > 0:
		return "requests slower than " + seconds(cv.Edge)
	case c.metric.Kind == KindLatency:
		return "slow requests"
	}
	return c.metric.Name + " per request"
}

// overall combines the checks: any Fail, or a mean e-value that reached 1/α,
// fails; all Pass passes; anything else is inconclusive.
func overall(checks []CheckVerdict, combinedFail bool, eValue, threshold float64, split *SampleRatio) (Outcome, string) {
	var fails, open, all []string
	for _, cv := range checks {
		all = append(all, cv.Check+": "+cv.Explanation)
		switch cv.Outcome {
		case Fail:
			fails = append(fails, cv.Check+": "+cv.Explanation)
		case Inconclusive:
			open = append(open, cv.Check+": "+cv.Explanation)
		}
	}
	switch {
	case len(fails) > 0:
		return Fail, strings.Join(fails, "; ")
	case combinedFail:
		return Fail, fmt.Sprintf("combined evidence of %d checks reached e-value %s of %s: fail", len(checks), number(eValue), number(threshold))
	case split != nil && (split.Mismatch || !split.Checked):
		return Inconclusive, split.Explanation
	case len(open) > 0:
		return Inconclusive, strings.Join(open, "; ")
	}
	return Pass, strings.Join(all, "; ")
}

// percent formats a rate as a percentage with two significant digits
// below 10%.
func percent(rate float64) string {
	v := rate * 100
	switch {
	case v == 0:
		return "0%"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(v, 'g', 2, 64) + "%"
}

// number formats a ratio or e-value for reading.
func number(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v, 'e', 1, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// ciEnd formats an interval end, marking ends clamped to the grid.
func ciEnd(v float64) string {
	switch {
	case v >= intervalValue(2*intervalHalf):
		return "over " + number(v)
	case v <= intervalValue(0):
		return "under " + number(v)
	}
	return number(v)
}

// level formats a confidence level like "99%".
func level(l float64) string {
	return strconv.FormatFloat(math.Round(l*1000)/10, 'f', -1, 64) + "%"
}

// seconds formats a latency edge.
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).String()
}

// count formats a request count.
func count(v float64) string {
	return strconv.FormatFloat(v, 'f', 0, 64)
}
