package cohort

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
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

// TestCatchUpIsBounded: a Reader that takes over long rollouts (a new
// leader) catches them up from their start a few at a time, oldest first,
// so that no query asks for more samples than a provider answers; the
// others read as no data yet (never a pass) until their turn.
func TestCatchUpIsBounded(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	for _, key := range []string{"a", "b", "c"} {
		l.counter(2, cohortLabels(semconv.PromRequests, key, "on", "split")...)
		l.counter(1, cohortLabels(semconv.PromRequests, key, "off", "split")...)
	}
	// Three rollouts of 60 hours or more with two series each: two
	// together exceed a catch-up of 200 series-hours. Before any flag was
	// read, one is thought to have the guessed 32 series a metric.
	var flags []FlagQuery
	for i, key := range []string{"c", "a", "b"} {
		flags = append(flags, FlagQuery{Flag: key, Treatment: "on", Control: "off", Since: l.end.Add(-60*time.Hour - time.Duration(i)*time.Minute), SkipLatency: true})
	}
	var counting countingProvider
	counting.p = l.s
	r := NewReader(&counting)
	r.requests.budget = 200
	for read, want := range [][]string{{"b"}, {"b", "a"}, {"b", "a", "c"}} {
		counting.n = 0
		got, err := r.Read(context.Background(), l.end, flags)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flags {
			rd := got[f.Flag]
			waiting := rd.Err != nil && strings.Contains(rd.Err.Error(), "caught up")
			if slices.Contains(want, f.Flag) {
				if rd.Counts.Treatment.Requests != 80 || waiting {
					t.Errorf("read %d: %s: %v requests, err %v; want 80", read, f.Flag, rd.Counts.Treatment.Requests, rd.Err)
				}
			} else if !waiting || !rd.Deferred || !errors.Is(rd.Err, ErrNoData) || !math.IsNaN(rd.Counts.Treatment.Requests) {
				t.Errorf("read %d: %s: %v requests, err %v; want no data while others are caught up", read, f.Flag, rd.Counts.Treatment.Requests, rd.Err)
			}
		}
		// A catch-up query, and from the second read on, one for the
		// flags already read.
		if wantQueries := []int{1, 2, 2}[read]; counting.n != wantQueries {
			t.Errorf("read %d sent %d queries, want %d", read, counting.n, wantQueries)
		}
	}
}

// TestCatchUpIsSizedBySeries: a catch-up takes as many new rollouts as
// their series fit in its budget: all of 1,000 new rollouts' requests (32
// series each, before any was read), a tenth of their latency (336), and,
// once some were read, as many as the series of those read say.
func TestCatchUpIsSizedBySeries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var flags []FlagQuery
	for i := range 1000 {
		flags = append(flags, FlagQuery{Flag: fmt.Sprintf("f%04d", i), Treatment: "on", Control: "off", Since: now.Add(-10 * time.Second)})
	}
	r := NewReader(nil)
	// Each new rollout reads back 5m10s: 0.086 hours.
	for _, tc := range []struct {
		src          *source
		caughtUp     int
		firstLater   string
		readSeries   int
		thenCaughtUp int
	}{
		{r.requests, 1000, "", 0, 0},
		{r.latency, 110, "f0110", 50, 740},
	} {
		_, catchUp, later := tc.src.plan(now, flags)
		if len(catchUp.follows) != tc.caughtUp || len(catchUp.follows)+len(later) != len(flags) {
			t.Errorf("%s: caught up %d and deferred %d, want %d of 1,000", tc.src.name, len(catchUp.follows), len(later), tc.caughtUp)
		}
		if tc.firstLater == "" {
			continue
		}
		if later[0] != tc.firstLater {
			t.Errorf("%s: deferred %s first, want %s (in order of start, then key)", tc.src.name, later[0], tc.firstLater)
		}
		// Read those caught up, each with fewer series than the guess.
		for _, fw := range catchUp.follows {
			for i := range tc.readSeries {
				fw.series[seriesKey(i)] = &series{}
			}
			fw.readAt(now)
		}
		_, catchUp, _ = tc.src.plan(now.Add(time.Second), flags)
		if len(catchUp.follows) != tc.thenCaughtUp {
			t.Errorf("%s: after reading rollouts of %d series, caught up %d, want %d", tc.src.name, tc.readSeries, len(catchUp.follows), tc.thenCaughtUp)
		}
	}
}

// TestWarmCatchesUpBeforeTheFirstLook: a flag warmed before its first look
// is read at that look from where the warming left off, with no catch-up
// reaching back before its start, and its counts are those of a Reader
// that reads it cold.
func TestWarmCatchesUpBeforeTheFirstLook(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	since := l.end.Add(-2 * time.Minute)
	q := []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: since}}

	var counting countingProvider
	counting.p = l.s
	warm := NewReader(&counting)
	followed, err := warm.Warm(context.Background(), since.Add(30*time.Second), q)
	if err != nil || !slices.Equal(followed, []string{"checkout"}) || counting.n != 2 {
		t.Fatalf("warm: followed %v, %v, after %d queries; want checkout after 2", followed, err, counting.n)
	}
	if again, err := warm.Warm(context.Background(), since.Add(31*time.Second), q); err != nil || len(again) != 1 || counting.n != 2 {
		t.Errorf("warming a followed flag again: %v, %v, %d queries in all; want it followed and no query", again, err, counting.n)
	}
	got, err := warm.Read(context.Background(), l.end, q)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range counting.queries[2:] {
		if !strings.HasSuffix(text, "[1m30s]") {
			t.Errorf("the first look after warming asked %s, want the samples since the warming (1m30s)", text)
		}
	}
	cold, err := NewReader(l.s).Read(context.Background(), l.end, q)
	if err != nil {
		t.Fatal(err)
	}
	w, c := got["checkout"], cold["checkout"]
	if w.Err != nil || !reflect.DeepEqual(w.Counts, c.Counts) || w.Counts.Treatment.Requests != 32 {
		t.Errorf("warmed: %+v (%v); cold: %+v; want the same, 32 treatment requests", w.Counts, w.Err, c.Counts)
	}
}

// TestReadSeesAFlagsFirstSamplesCommittedLate: a flag whose series the
// Reader has not seen yet is read back a live window at every read, so its
// first samples are counted even when each is committed after the read at
// its time (a large scrape commits its samples seconds after the time they
// carry, and looks that keep step with the scrapes would otherwise miss
// every one).
func TestReadSeesAFlagsFirstSamplesCommittedLate(t *testing.T) {
	l := newLoader(t)
	since := l.end.Add(-time.Minute)
	q := []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: since, SkipLatency: true}}
	r := NewReader(l.s)
	appendAt := func(at time.Time, v float64) {
		t.Helper()
		app := l.s.Appender(context.Background())
		for _, variant := range []string{"on", "off"} {
			if _, err := app.Append(0, labels.FromStrings(cohortLabels(semconv.PromRequests, "f", variant, "split")...), at.UnixMilli(), v); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(at time.Time) Reading {
		t.Helper()
		got, err := r.Read(context.Background(), at, q)
		if err != nil {
			t.Fatal(err)
		}
		return got["f"]
	}
	// Each scrape is stamped 5 s before a read but committed after it.
	for k := range 3 {
		at := since.Add(time.Duration(10*k+10) * time.Second)
		if rd := read(at); k == 0 && !math.IsNaN(rd.Counts.Treatment.Requests) {
			t.Fatalf("before any sample: %v requests, want none", rd.Counts.Treatment.Requests)
		}
		appendAt(at.Add(-5*time.Second), float64(10*(k+1)))
	}
	if rd := read(since.Add(40 * time.Second)); rd.Counts.Treatment.Requests != 30 || rd.Err != nil {
		t.Errorf("after three scrapes committed late: %v requests (%v), want 30", rd.Counts.Treatment.Requests, rd.Err)
	}
}

// TestReadSeesLateSamples: a sample committed after a read but stamped
// before it (scrape lag, remote write, VictoriaMetrics's latency offset) is
// still read, so a counter reset it shows is counted even when the counter
// has grown past its old value by the next sample; each reading's Latest is
// the latest sample shown so far, and its Every the least time between two
// consecutive samples, a missed scrape's gap notwithstanding.
func TestReadSeesLateSamples(t *testing.T) {
	l := newLoader(t)
	since := l.end.Add(-10 * 15 * time.Second)
	at := func(k int) time.Time { return since.Add(time.Duration(k) * 15 * time.Second) }
	ls := labels.FromStrings(cohortLabels(semconv.PromRequests, "f", "on", "split")...)
	control := labels.FromStrings(cohortLabels(semconv.PromRequests, "f", "off", "split")...)
	appendAt := func(k int, v float64) {
		t.Helper()
		app := l.s.Appender(context.Background())
		for _, s := range []labels.Labels{ls, control} {
			if _, err := app.Append(0, s, at(k).UnixMilli(), v); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(l.s)
	q := []FlagQuery{{Flag: "f", Treatment: "on", Control: "off", Since: since}}
	wantEvery := time.Duration(0)
	read := func(now time.Time) (float64, time.Time) {
		t.Helper()
		got, err := r.Read(context.Background(), now, q)
		if err != nil {
			t.Fatal(err)
		}
		if every := got["f"].Every; every != wantEvery {
			t.Errorf("read at %v: samples every %v, want %v", now.Sub(since), every, wantEvery)
		}
		return got["f"].Counts.Treatment.Requests, got["f"].Latest
	}
	// One sample shows no interval.
	appendAt(0, 0)
	read(at(0).Add(time.Second))
	for k := 1; k <= 5; k++ {
		appendAt(k, float64(10*k))
	}
	wantEvery = 15 * time.Second
	// Read just after k=6's scrape, before its samples are committed:
	// twice, the second finding nothing newer.
	for range 2 {
		if n, latest := read(at(6).Add(time.Second)); n != 50 || !latest.Equal(at(5)) {
			t.Fatalf("before k=6's samples: %v requests, latest sample at %v; want 50 and %v", n, latest, at(5))
		}
	}
	// The pod restarted: k=6 shows 3, and by k=7 it has counted 60.
	appendAt(6, 3)
	appendAt(7, 60)
	if n, latest := read(at(7).Add(time.Second)); n != 110 || !latest.Equal(at(7)) {
		t.Errorf("after the late sample of the restart: %v requests, latest sample at %v; want 50 + 3 + 57 = 110 and %v", n, latest, at(7))
	}
	// The scrape at k=8 failed; k=9's sample is 30 s after k=7's.
	appendAt(9, 80)
	if n, latest := read(at(9).Add(time.Second)); n != 130 || !latest.Equal(at(9)) {
		t.Errorf("after a missed scrape: %v requests, latest sample at %v; want 130 and %v", n, latest, at(9))
	}
}
