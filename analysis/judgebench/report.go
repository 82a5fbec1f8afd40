package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// row summarizes one judge on one scenario.
type row struct {
	rate                    float64 // share of runs rolled back
	medianReq, p90Req       int
	medianEvents, p90Events int
	rollbacks               int
}

// summarize reduces one judge's outcomes.
func summarize(results [][]outcome, judge int) row {
	var req, ev []int
	for _, r := range results {
		if o := r[judge]; o.rolledBack {
			req = append(req, o.requests)
			ev = append(ev, o.events)
		}
	}
	rw := row{rollbacks: len(req), rate: float64(len(req)) / float64(len(results))}
	if len(req) > 0 {
		rw.medianReq, rw.p90Req = quantile(req, 0.5), quantile(req, 0.9)
		rw.medianEvents, rw.p90Events = quantile(ev, 0.5), quantile(ev, 0.9)
	}
	return rw
}

// quantile is the nearest-rank q-quantile of xs.
func quantile(xs []int, q float64) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(len(s)-1, i))]
}

// writeTable writes one markdown table: a row per scenario and judge.
func writeTable(w io.Writer, scs []scenario, all [][][]outcome) {
	fmt.Fprintln(w, "| scenario | judge | false rollbacks | detected | treatment requests to rollback, median / p90 | treatment bad events to rollback, median / p90 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	for i, s := range scs {
		for j, name := range judgeNames {
			rw := summarize(all[i], j)
			rate := fmt.Sprintf("%.2f%%", 100*rw.rate)
			falseR, det := rate, "—"
			if s.effect {
				falseR, det = "—", rate
			}
			req, ev := "—", "—"
			if rw.rollbacks > 0 {
				req = thousands(rw.medianReq) + " / " + thousands(rw.p90Req)
				ev = thousands(rw.medianEvents) + " / " + thousands(rw.p90Events)
			}
			label := s.name
			if j > 0 {
				label = ""
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", label, name, falseR, det, req, ev)
		}
	}
}

// thousands formats n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
