package scalebench

import (
	"context"
	"encoding/json"
	goflag "flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/console"
	"github.com/vigil-dev/vigil/controller/plan"
	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/rolloutmetrics"
	"github.com/vigil-dev/vigil/controller/runner"
	"github.com/vigil-dev/vigil/internal/client"
	"github.com/vigil-dev/vigil/internal/testenv/promtest"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
	"github.com/vigil-dev/vigil/sdk/flag"
)

var (
	scaleN         = goflag.String("scale.n", "1000", "comma-separated numbers of flags under rollout, one run each")
	scaleProviders = goflag.String("scale.providers", "embedded,prometheus", "metric sources, one run each: embedded (the controller's own store, scraping the generator) and prometheus (a real Prometheus)")
	scaleRPS       = goflag.Float64("scale.rps", 20000, "requests per second of each flag: enough that a harmless step has the evidence to pass when its minimum duration ends")
	scaleLatency   = goflag.Bool("scale.latency", true, "serve the request duration histogram too, and judge latency")
	scaleTargets   = goflag.Int("scale.targets", 1, "scrape targets the generator's series are split over, as a fleet's services each export their own flags' series")
	scaleTextOnly  = goflag.Bool("scale.text-only", false, "answer scrapes in the text format only, as services whose exporter knows no other do; otherwise in protobuf when the scraper asks for it (the embedded store does), as client_golang's handler does")
	scaleJudgeLat  = goflag.Bool("scale.judge-latency", true, "with -scale.latency, judge latency too rather than the error rate only")
	scaleMinStep   = goflag.Duration("scale.min-step", 30*time.Second, "each step's minimum duration; from 2 minutes on, the run also reports the controller's steady CPU: its CPU per minute while every rollout holds its first step, from 1 minute after the starts to 10 s before that minimum ends, which leaves the starts' one-time work out")
	scaleScrape    = goflag.Duration("scale.scrape-interval", 10*time.Second, "how often the metric source, embedded or Prometheus, scrapes the generator (the embedded store's default is 15s)")
	scaleTimeout   = goflag.Duration("scale.timeout", 15*time.Minute, "give up on a run when its rollouts have not finished by then")
	scaleMemLimit  = goflag.String("scale.gomemlimit", "", "GOMEMLIMIT of the controller, as --auto-gomemlimit-ratio sets it in a memory-limited container (such as 900MiB); empty for none")
	scaleRestart   = goflag.Duration("scale.restart-after", 0, "stop the controller (SIGTERM, as a deploy does) this long after the rollouts start and start it again on the same data and address; 0 for none")
	scaleKill      = goflag.Bool("scale.restart-kill", false, "with -scale.restart-after: kill the controller (SIGKILL, as the OOM killer does) rather than stop it, so that its leases stay held until they run out")
)

// The plan every rollout follows: two steps before 100%, each held at
// least -scale.min-step, judged every 10 s.
const (
	benchInterval = 10 * time.Second
	adminToken    = "scale-bench-admin-token-0123456789"
	// loopTick is how often vigil serve's loop looks for due rollouts.
	loopTick = time.Second
)

var benchSteps = []float64{10, 50}

// result is what one run measured.
type result struct {
	provider string
	n        int
	elapsed  time.Duration
	// startTook is how long starting every rollout through the API took.
	startTook time.Duration
	// restartedAt is when, after the rollouts started, the controller was
	// restarted; zero when it was not.
	restartedAt time.Duration
	// tick is the loop's tick duration histogram; reads the looks' cohort
	// reads, one per tick with rollouts due (and more when a tick's due
	// rollouts are read in parts); catchUps the reads that caught new
	// rollouts up before their first looks.
	tick, reads, catchUps HistogramDelta
	// queries is how many PromQL queries Prometheus evaluated (the
	// embedded store selects the Reader's reads past its engine).
	queries float64
	// readErrors counts the cohort reads in which a query failed.
	readErrors float64
	// looksDue and looksJudged count the rollouts the loop found due and
	// those the judge weighed; the others waited for a new scrape (looked
	// at again at the next tick) or for their analysis to start. cpuTotal is the
	// controller's CPU seconds in all, which, by look, compares runs
	// whose lengths differ.
	looksDue, looksJudged, cpuTotal float64
	// cpu is the controller's CPU seconds per minute, promCPU
	// Prometheus's (0 with the embedded store); steadyCPU the
	// controller's while every rollout held its first step (see
	// -scale.min-step), NaN when not measured.
	cpu, promCPU, steadyCPU float64
	maxRSS                  uint64
	// schedule is strict; scheduleTick allows a step one loop tick (1 s)
	// more, the granularity at which the loop looks.
	schedule, scheduleTick Schedule
	// phases counts the rollouts by phase at the end.
	phases map[rollout.Phase]int
	// firstPage is the default first page of summaries (its time and
	// size), fullPass reading every summary 1000 at a time, fullHistory
	// every whole state with its history.
	firstPage, fullPass, fullHistory timed
}

type timed struct {
	took  time.Duration
	bytes int
}

func (r result) row() string {
	tick := fmt.Sprintf("%.2f / ≤%s s", r.tick.Quantile(0.5), bound(r.tick.MaxBound()))
	perRead, readMean := math.NaN(), math.NaN()
	if r.reads.Count > 0 {
		perRead = r.queries / float64(r.reads.Count)
		readMean = r.reads.Sum / float64(r.reads.Count)
	}
	queries := fmt.Sprintf("%.1f PromQL queries each", perRead)
	if r.provider != "prometheus" {
		// The embedded store reads the Reader's plain selectors straight
		// from its TSDB, past the engine that counts queries.
		queries = "selected from the TSDB"
	}
	cpu := fmt.Sprintf("%.1f", r.cpu)
	if !math.IsNaN(r.steadyCPU) {
		cpu += fmt.Sprintf(", steady %.1f", r.steadyCPU)
	}
	if r.provider == "prometheus" {
		cpu += fmt.Sprintf(" (+%.1f in Prometheus)", r.promCPU)
	}
	return fmt.Sprintf("| %s | %s | %s | %d reads (%.0f failed), %s, read %.2f s mean, ≤%s s max | %s | %d MB | %.1f%% of %d (%d early, %d late, longest %s); %.1f%% within 1 s | %s, %s; all %s; with history %s, %s | %s |",
		fmtN(r.n), r.provider, tick, r.reads.Count, r.readErrors, queries, readMean, bound(r.reads.MaxBound()), cpu, r.maxRSS>>20,
		100*r.schedule.Share(), r.schedule.Steps, r.schedule.Early, r.schedule.Late, r.schedule.Longest.Round(100*time.Millisecond), 100*r.scheduleTick.Share(),
		r.firstPage.took.Round(time.Millisecond), size(r.firstPage.bytes), r.fullPass.took.Round(time.Millisecond),
		r.fullHistory.took.Round(time.Millisecond), size(r.fullHistory.bytes), phaseCounts(r.phases))
}

func bound(b float64) string {
	if math.IsInf(b, 1) {
		return "∞"
	}
	return strconv.FormatFloat(b, 'g', 3, 64)
}

func size(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d kB", n>>10)
}

func fmtN(n int) string {
	if n >= 1000 {
		return fmt.Sprintf("%d,%03d", n/1000, n%1000)
	}
	return strconv.Itoa(n)
}

func phaseCounts(m map[rollout.Phase]int) string {
	var parts []string
	for _, p := range rollout.Phases {
		if m[p] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[p], p))
		}
	}
	return strings.Join(parts, ", ")
}

// BenchmarkScale rolls out N flags at once on the real controller, for
// each N of -scale.n and each source of -scale.providers, and logs one
// row of docs/benchmarks.md per run. One run takes minutes; b.N is not
// used, every run is one.
func BenchmarkScale(b *testing.B) {
	var sizes []int
	for s := range strings.SplitSeq(*scaleN, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.Fatalf("-scale.n %q: want whole numbers above 0, comma-separated", *scaleN)
		}
		sizes = append(sizes, n)
	}
	bin := vigiltest.Build(b)
	var rows []string
	for _, n := range sizes {
		for p := range strings.SplitSeq(*scaleProviders, ",") {
			if p != "embedded" && p != "prometheus" {
				b.Fatalf("-scale.providers: %q is neither embedded nor prometheus", p)
			}
			b.Run(fmt.Sprintf("%s/n=%d", p, n), func(b *testing.B) {
				r := runScale(b, bin, p, n)
				b.ReportMetric(r.cpu, "cpu-s/min")
				b.ReportMetric(float64(r.maxRSS>>20), "rss-MB")
				b.ReportMetric(100*r.schedule.Share(), "%on-schedule")
				b.ReportMetric(r.tick.Quantile(0.5), "tick-p50-s")
				rows = append(rows, r.row())
			})
		}
	}
	b.Logf("rows for docs/benchmarks.md (rps %v per flag, latency served %v, judged %v, GOMEMLIMIT %q, %d scrape targets every %v, text only %v):\n%s", *scaleRPS, *scaleLatency, *scaleLatency && *scaleJudgeLat, *scaleMemLimit, max(1, *scaleTargets), *scaleScrape, *scaleTextOnly, strings.Join(rows, "\n"))
}

// runScale is one run: the generator, the metric source, the controller,
// N flags and their rollouts, until every rollout has finished.
func runScale(b *testing.B, bin, provider string, n int) result {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	r := result{provider: provider, n: n, phases: map[rollout.Phase]int{}, steadyCPU: math.NaN()}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("scale-%05d", i)
	}
	gen := NewGenerator(keys, GeneratorOptions{RPS: *scaleRPS, ErrorRate: 0.05, Latency: *scaleLatency, Seed: uint64(n), TextOnly: *scaleTextOnly})
	var targets []string
	shards := max(1, *scaleTargets)
	for i := range shards {
		gsrv := httptest.NewServer(gen.Shard(i, shards))
		b.Cleanup(gsrv.Close)
		targets = append(targets, gsrv.URL+"/metrics")
	}

	args := []string{"--data", b.TempDir(), "--max-body-bytes", strconv.Itoa(64 << 20)}
	if *scaleRestart > 0 {
		// The controller comes back where the generator and the client
		// look for it.
		args = append(args, "--addr", freeAddr(b))
	}
	var prom *promtest.Server
	if provider == "prometheus" {
		prom = promtest.Start(b, promtest.Options{Targets: targets, ScrapeInterval: *scaleScrape, StartTimeout: 2 * time.Minute})
		args = append(args, "--prometheus-url", prom.URL)
	} else {
		for _, t := range targets {
			args = append(args, "--scrape-target", t)
		}
		args = append(args, "--scrape-interval", scaleScrape.String())
	}
	env := []string{"VIGIL_ADMIN_TOKEN=" + adminToken}
	if *scaleMemLimit != "" {
		env = append(env, "GOMEMLIMIT="+*scaleMemLimit)
	}
	p := vigiltest.Start(b, bin, env, args...)
	pid := p.Cmd.Process.Pid
	c, err := client.New(p.URL, adminToken)
	if err != nil {
		b.Fatal(err)
	}

	// The flags, 1,000 to a file.
	for lo := 0; lo < n; lo += 1000 {
		var file flag.File
		for _, k := range keys[lo:min(lo+1000, n)] {
			file.Flags = append(file.Flags, flag.Flag{Key: k, Enabled: true, Control: Control, Treatment: Treatment,
				Variants: map[string]json.RawMessage{Treatment: json.RawMessage("true"), Control: json.RawMessage("false")},
				Rollout:  &flag.Rollout{Percent: 0}})
		}
		body, err := json.Marshal(file)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Apply(ctx, body, false, false, "scale benchmark"); err != nil {
			b.Fatalf("apply flags: %v", err)
		}
	}
	followed := make(chan error, 1)
	go func() { followed <- gen.Follow(ctx, c, time.Second) }()

	before := mustScrape(b, ctx, p.URL+"/metrics")
	var promBefore Metrics
	if prom != nil {
		promBefore = mustScrape(b, ctx, prom.URL+"/metrics")
	}
	u0 := mustUsage(b, pid)
	began := time.Now()

	// Start every rollout, four requests at a time.
	steps, interval, minStep := slices.Clone(benchSteps), plan.Duration(benchInterval), plan.Duration(*scaleMinStep)
	spec := plan.Spec{Steps: &steps, Interval: &interval, MinStepDuration: &minStep}
	if !*scaleLatency || !*scaleJudgeLat {
		spec.Metrics = &[]plan.MetricSpec{{Name: plan.MetricErrorRate}}
	}
	work := make(chan string)
	var wg sync.WaitGroup
	var startErr error
	var mu sync.Mutex
	for range 4 {
		wg.Go(func() {
			for k := range work {
				err := c.Do(ctx, client.Request{Method: http.MethodPost, Path: "/api/v1/rollouts/" + url.PathEscape(k) + "/start",
					Body: runner.CommandBody{Plan: &spec, Reason: "scale benchmark"}}, nil)
				if err != nil {
					mu.Lock()
					startErr = fmt.Errorf("start %s: %w", k, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	if startErr != nil {
		b.Fatal(startErr)
	}
	r.startTook = time.Since(began)

	// Follow the rollouts until none progresses (a paused one waits for a
	// person, who will not come), sampling the controller's memory and
	// asking every 2 s, and the list's first page every 10 s. Whether any
	// progresses is asked of the list with a filter and a page of one, so
	// that the benchmark's own polling costs the controller little.
	deadline := began.Add(*scaleTimeout)
	var firstPages []time.Duration
	var last time.Time
	// A restart keeps what the stopped process counted: its CPU, and its
	// metrics since before (the new process counts from zero).
	var stopped stoppedCounts
	// The steady window's first and last samples of the controller's
	// CPU, while every rollout holds its first step: the starts, the
	// catch-up reads and the treatment cohorts' first series are behind,
	// and no step has ended.
	measureSteady := *scaleMinStep >= 2*time.Minute && *scaleRestart == 0
	var steadyFrom, steadyTo struct {
		at  time.Time
		cpu time.Duration
	}
	for {
		if *scaleRestart > 0 && r.restartedAt == 0 && time.Since(began) >= *scaleRestart {
			r.restartedAt = time.Since(began)
			stopped = stopped.add(b, ctx, p, pid, u0, before)
			sig := syscall.SIGTERM
			if *scaleKill {
				sig = syscall.SIGKILL
			}
			if err := p.Cmd.Process.Signal(sig); err != nil {
				b.Fatal(err)
			}
			if err := p.Wait(time.Minute); err != nil {
				b.Logf("the stopped controller: %v", err)
			}
			p = vigiltest.Start(b, bin, env, args...)
			pid, u0, before = p.Cmd.Process.Pid, Usage{}, Metrics{}
		}
		u := mustUsage(b, pid)
		r.maxRSS = max(r.maxRSS, u.RSS)
		if in := time.Since(began); measureSteady && in >= time.Minute && in <= *scaleMinStep-10*time.Second {
			if steadyFrom.at.IsZero() {
				steadyFrom.at, steadyFrom.cpu = time.Now(), u.CPU
			}
			steadyTo.at, steadyTo.cpu = time.Now(), u.CPU
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			tp := getTimed(b, ctx, p.URL+"/api/v1/rollouts")
			firstPages = append(firstPages, tp.took)
			r.firstPage.bytes = tp.bytes
		}
		// Asked every 2 s, so that the run's length, which CPU per minute
		// divides by, ends within 2 s of the last rollout's end (at 10 s
		// it varied by up to 10 s from run to run, 12% of a run).
		more, err := anyProgressing(ctx, c)
		if err != nil {
			b.Fatalf("list: %v", err)
		}
		if !more {
			break
		}
		if time.Now().After(deadline) {
			b.Logf("rollouts still progressing after %v", *scaleTimeout)
			break
		}
		select {
		case err := <-followed:
			b.Fatalf("the generator stopped following the flags: %v\n%s", err, p.Log())
		case <-time.After(2 * time.Second):
		}
	}
	r.elapsed = time.Since(began)
	u1 := mustUsage(b, pid)
	t0 := time.Now()
	if _, err := c.Rollouts(ctx, nil, runner.MaxListLimit); err != nil {
		b.Fatalf("list: %v", err)
	}
	r.fullPass.took = time.Since(t0)
	after := mustScrape(b, ctx, p.URL+"/metrics")
	slices.Sort(firstPages)
	r.firstPage.took = firstPages[len(firstPages)/2]

	minutes := r.elapsed.Minutes()
	r.cpuTotal = (stopped.cpu + u1.CPU - u0.CPU).Seconds()
	r.cpu = r.cpuTotal / minutes
	if window := steadyTo.at.Sub(steadyFrom.at); window >= time.Minute {
		r.steadyCPU = (steadyTo.cpu - steadyFrom.cpu).Seconds() / window.Minutes()
	}
	r.looksDue = stopped.looksDue + after.Sum(rolloutmetrics.LooksDue, nil, false) - before.Sum(rolloutmetrics.LooksDue, nil, false)
	r.looksJudged = stopped.looksJudged + after.Sum(rolloutmetrics.LooksJudged, nil, false) - before.Sum(rolloutmetrics.LooksJudged, nil, false)
	r.tick = stopped.tick.Add(HistogramBetween(before, after, rolloutmetrics.TickDuration, nil))
	r.reads = stopped.reads.Add(HistogramBetween(before, after, rolloutmetrics.ProviderQueryDuration, lookReads))
	r.catchUps = stopped.catchUps.Add(HistogramBetween(before, after, rolloutmetrics.ProviderQueryDuration, catchUpReads))
	r.readErrors = stopped.readErrors + after.Sum(rolloutmetrics.ProviderErrors, nil, false) - before.Sum(rolloutmetrics.ProviderErrors, nil, false)
	if prom != nil {
		promAfter := mustScrape(b, ctx, prom.URL+"/metrics")
		inner := map[string]string{"slice": "inner_eval"}
		r.queries = promAfter.Sum("prometheus_engine_query_duration_seconds", inner, false) - promBefore.Sum("prometheus_engine_query_duration_seconds", inner, false)
		r.promCPU = (promAfter.Sum("process_cpu_seconds_total", nil, false) - promBefore.Sum("process_cpu_seconds_total", nil, false)) / minutes
	}

	// Every whole state, with its history, 1,000 at a time.
	var states []rollout.State
	q := url.Values{"view": {"full"}, "limit": {strconv.Itoa(runner.MaxListLimit)}}
	for {
		tp := getTimed(b, ctx, p.URL+"/api/v1/rollouts?"+q.Encode())
		r.fullHistory.took += tp.took
		r.fullHistory.bytes += tp.bytes
		var page runner.RolloutList[rollout.State]
		if err := json.Unmarshal(tp.body, &page); err != nil {
			b.Fatalf("full list: %v", err)
		}
		states = append(states, page.Rollouts...)
		if page.Continue == "" {
			break
		}
		q.Set("continue", page.Continue)
	}
	for _, s := range states {
		r.phases[s.Phase]++
	}
	r.schedule = ScheduleOf(states, 0)
	r.scheduleTick = ScheduleOf(states, loopTick)
	b.Logf("steps held, by step: %s", heldByStep(states))
	// The judge's looks during the first few late steps say what held
	// them.
	late := 0
	for h := range StepsHeld(states) {
		if !h.Late(0) {
			continue
		}
		if late++; late > 3 {
			break
		}
		b.Logf("late: %s step %d held %v; its looks: %s", h.Key, h.Step, h.Held().Round(10*time.Millisecond), looksDuring(b, ctx, p.URL, h))
	}
	// The controller says where an overrun tick's time went; the first
	// few say enough.
	overruns := 0
	for _, line := range strings.Split(p.Log(), "\n") {
		if !strings.Contains(line, "rollout tick overran") {
			continue
		}
		if overruns++; overruns <= 6 {
			b.Logf("controller: %s", line)
		}
	}
	if overruns > 6 {
		b.Logf("controller: %d more ticks overran", overruns-6)
	}
	restart := ""
	if r.restartedAt > 0 {
		how := "stopped"
		if *scaleKill {
			how = "killed"
		}
		restart = fmt.Sprintf(", the controller %s and restarted %v in", how, r.restartedAt.Round(time.Second))
	}
	b.Logf("%s n=%d: %v to start, %v in all%s; %s", provider, n, r.startTook.Round(time.Millisecond), r.elapsed.Round(time.Second), restart, r.row())
	b.Logf("%s n=%d: controller CPU %.1f s in all, %.1f ms a look due; %.0f looks due, %.0f judged; %d catch-up reads, %.2f s mean", provider, n, r.cpuTotal, 1e3*r.cpuTotal/max(1, r.looksDue), r.looksDue, r.looksJudged,
		r.catchUps.Count, r.catchUps.Sum/float64(max(1, r.catchUps.Count)))
	return r
}

// lookReads and catchUpReads select the looks' reads and the catch-ups'
// among the controller's reads of the metric source.
var (
	lookReads    = map[string]string{rolloutmetrics.LabelRead: rolloutmetrics.ReadLook}
	catchUpReads = map[string]string{rolloutmetrics.LabelRead: rolloutmetrics.ReadCatchUp}
)

// stoppedCounts is what the controller processes that were stopped
// counted.
type stoppedCounts struct {
	cpu                   time.Duration
	tick, reads, catchUps HistogramDelta
	readErrors            float64
	looksDue, looksJudged float64
}

// add adds what process p (pid, whose CPU was u0 and metrics before when
// the run's count began) counted.
func (e stoppedCounts) add(b *testing.B, ctx context.Context, p *vigiltest.Process, pid int, u0 Usage, before Metrics) stoppedCounts {
	m := mustScrape(b, ctx, p.URL+"/metrics")
	u := mustUsage(b, pid)
	e.cpu += u.CPU - u0.CPU
	e.tick = e.tick.Add(HistogramBetween(before, m, rolloutmetrics.TickDuration, nil))
	e.reads = e.reads.Add(HistogramBetween(before, m, rolloutmetrics.ProviderQueryDuration, lookReads))
	e.catchUps = e.catchUps.Add(HistogramBetween(before, m, rolloutmetrics.ProviderQueryDuration, catchUpReads))
	e.readErrors += m.Sum(rolloutmetrics.ProviderErrors, nil, false) - before.Sum(rolloutmetrics.ProviderErrors, nil, false)
	e.looksDue += m.Sum(rolloutmetrics.LooksDue, nil, false) - before.Sum(rolloutmetrics.LooksDue, nil, false)
	e.looksJudged += m.Sum(rolloutmetrics.LooksJudged, nil, false) - before.Sum(rolloutmetrics.LooksJudged, nil, false)
	return e
}

// freeAddr is a loopback address no one listens on.
func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type timedBody struct {
	timed
	body []byte
}

// getTimed reads url with the admin token and times it.
func getTimed(b *testing.B, ctx context.Context, u string) timedBody {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s %v", u, resp.Status, err)
	}
	return timedBody{timed{time.Since(t0), len(body)}, body}
}

func mustScrape(b *testing.B, ctx context.Context, u string) Metrics {
	ms, err := Scrape(ctx, u)
	if err != nil {
		b.Fatal(err)
	}
	return ms
}

func mustUsage(b *testing.B, pid int) Usage {
	u, err := ReadUsage(pid)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// looksDuring lists the looks the controller at base stored during step
// h, each as its time into the step, outcome and summary.
func looksDuring(b *testing.B, ctx context.Context, base string, h StepHeld) string {
	var looks console.Looks
	if err := json.Unmarshal(getTimed(b, ctx, base+"/api/v1/console/rollouts/"+url.PathEscape(h.Key)+"/looks").body, &looks); err != nil {
		b.Fatalf("looks at %s: %v", h.Key, err)
	}
	var out []string
	for _, l := range looks.Looks {
		if l.Step == h.Step && !l.At.Before(h.From) && !l.At.After(h.To) {
			out = append(out, fmt.Sprintf("at %v %s (%s)", l.At.Sub(h.From).Round(10*time.Millisecond), l.Outcome, l.Summary))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

// heldByStep is the least, median and most time the controller held each
// step, for the log.
func heldByStep(states []rollout.State) string {
	held := map[int][]time.Duration{}
	for h := range StepsHeld(states) {
		held[h.Step] = append(held[h.Step], h.Held())
	}
	var parts []string
	for step := 0; step < 10; step++ {
		hs := held[step]
		if len(hs) == 0 {
			continue
		}
		slices.Sort(hs)
		parts = append(parts, fmt.Sprintf("step %d: %v / %v / %v", step, hs[0].Round(10*time.Millisecond), hs[len(hs)/2].Round(10*time.Millisecond), hs[len(hs)-1].Round(10*time.Millisecond)))
	}
	return strings.Join(parts, "; ")
}

// anyProgressing reports whether any rollout still progresses: the first
// one the filtered list finds, a page of one at a time.
func anyProgressing(ctx context.Context, c *client.Client) (bool, error) {
	found := false
	err := c.RolloutPages(ctx, []rollout.Phase{rollout.Progressing}, 1, func(page []runner.Summary) bool {
		found = len(page) > 0
		return !found
	})
	return found, err
}
