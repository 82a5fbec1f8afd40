package cohort

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigil-dev/vigil/sdk/semconv"
)

// TestReadCountsExactly reads counters with a baseline before the rollout,
// a pod restart (a counter reset), a pod that appears after the start, one
// that goes away, and an error series created at the first failure and
// again after the restart. Counts are whole, never go down, and equal what
// the counters counted since the start as of each read; a Reader that did
// not follow the rollout (a new process) reads the same.
func TestReadCountsExactly(t *testing.T) {
	l := newLoader(t)
	since := l.end.Add(-20 * 15 * time.Second)
	at := func(k int) time.Time { return since.Add(time.Duration(k) * 15 * time.Second) }
	app := l.s.Appender(context.Background())
	add := func(value func(k int) float64, from, to int, lbls ...string) {
		ls := labels.FromStrings(lbls...)
		for k := from; k <= to; k++ {
			if _, err := app.Append(0, ls, at(k).UnixMilli(), value(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	on := func(pod string, extra ...string) []string {
		return cohortLabels(semconv.PromRequests, "f", "on", "split", append([]string{"pod", pod}, extra...)...)
	}
	// pod-a: 18 at the start, restarts after its sample at k=7 (32) and
	// counts 1 at k=8.
	add(func(k int) float64 {
		if k < 8 {
			return float64(10 + 2*(k+4))
		}
		return float64(1 + 2*(k-8))
	}, -4, 20, on("a")...)
	// pod-b: first scraped at k=4 with 5 requests.
	add(func(k int) float64 { return float64(5 + 3*(k-4)) }, 4, 20, on("b")...)
	// pod-c: 104 at the start, gone after k=7.
	add(func(k int) float64 { return float64(100 + k + 4) }, -4, 7, on("c")...)
	// pod-a's errors: the series appears at the first failure (k=2), and
	// again after the restart (k=10).
	add(func(k int) float64 { return float64(k - 1) }, 2, 7, on("a", semconv.LabelErrorType, "500")...)
	add(func(k int) float64 { return float64(k - 9) }, 10, 20, on("a", semconv.LabelErrorType, "500")...)
	add(func(k int) float64 { return float64(10 * (k + 4)) }, -4, 20, cohortLabels(semconv.PromRequests, "f", "off", "split", "pod", "a")...)
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}

	q := []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: since}}
	follower := NewReader(l.s)
	for _, c := range []struct {
		k                        int
		requests, errors, contrl float64
	}{
		{3, 11, 2, 30},
		{7, 41, 6, 70},
		{8, 45, 6, 80},
		{12, 68, 9, 120},
		{20, 116, 17, 200},
	} {
		now := at(c.k).Add(5 * time.Second)
		for name, r := range map[string]*Reader{"follower": follower, "new reader": NewReader(l.s)} {
			got, err := r.Read(context.Background(), now, q)
			if err != nil {
				t.Fatal(err)
			}
			co := got["f"].Counts
			if co.Treatment.Requests != c.requests || co.Treatment.Errors != c.errors || co.Control.Requests != c.contrl {
				t.Errorf("%s at k=%d: treatment %v requests, %v errors, control %v; want exactly %v, %v, %v",
					name, c.k, co.Treatment.Requests, co.Treatment.Errors, co.Control.Requests, c.requests, c.errors, c.contrl)
			}
		}
	}
	// The rollout started again at k=8: the follower begins anew from the
	// samples at that start.
	got, err := follower.Read(context.Background(), at(20).Add(5*time.Second), []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: at(8)}})
	if err != nil {
		t.Fatal(err)
	}
	if co := got["f"].Counts; co.Treatment.Requests != 71 || co.Treatment.Errors != 11 || co.Control.Requests != 120 {
		t.Errorf("after a restart of the rollout: treatment %v requests, %v errors, control %v; want 71, 11, 120", co.Treatment.Requests, co.Treatment.Errors, co.Control.Requests)
	}
}
