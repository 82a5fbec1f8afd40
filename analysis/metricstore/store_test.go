package metricstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
)

func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func waitScraped(t *testing.T, s *Store, after time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitScraped(ctx, after); err != nil {
		t.Fatal(err)
	}
}

func TestScrapeThenQuery(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "things_total", Help: "Things."}, []string{"kind"})
	reg.MustRegister(c)
	c.WithLabelValues("a").Add(3)
	exp := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(exp.Close)

	s := openStore(t, Options{ScrapeTargets: []string{exp.URL + "/metrics"}, ScrapeInterval: 200 * time.Millisecond})
	waitScraped(t, s, time.Time{})
	v, err := s.Query(context.Background(), `sum(things_total)`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Value != 3 {
		t.Fatalf("sum(things_total) = %v, want 3", v)
	}

	c.WithLabelValues("b").Add(4)
	waitScraped(t, s, time.Now())
	v, err = s.Query(context.Background(), `things_total{kind="b"}`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Value != 4 || v[0].Metric["job"] != "scrape" || v[0].Metric["instance"] == "" {
		t.Fatalf(`things_total{kind="b"} = %v, want 4 with job and instance labels`, v)
	}
	ts := s.Targets()
	if len(ts) != 1 || ts[0].Health != "up" || ts[0].URL != exp.URL+"/metrics" {
		t.Fatalf("Targets() = %+v", ts)
	}
}

func TestScrapeTargetDown(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	s := openStore(t, Options{ScrapeTargets: []string{strings.TrimPrefix(down.URL, "http://")}, ScrapeInterval: 200 * time.Millisecond})
	var ts []TargetStatus
	poll.Until(t, 20*time.Second, "the target to report down", func() error {
		if ts = s.Targets(); len(ts) != 1 || ts[0].Health != "down" {
			return fmt.Errorf("targets %+v", ts)
		}
		return nil
	})
	if !strings.Contains(ts[0].LastError, "500") {
		t.Errorf("LastError = %q, want the HTTP status", ts[0].LastError)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.WaitScraped(ctx, time.Time{}); err == nil {
		t.Fatal("WaitScraped succeeded with the only target down")
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"no dir":          {},
		"bad target":      {Dir: t.TempDir(), ScrapeTargets: []string{"ftp://x:1/metrics"}},
		"credentials":     {Dir: t.TempDir(), ScrapeTargets: []string{"http://u:p@x:1/metrics"}},
		"negative scrape": {Dir: t.TempDir(), ScrapeInterval: -time.Second},
	} {
		if s, err := Open(context.Background(), opts); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	app := s.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "kept", "a", "1"), now.UnixMilli(), 42); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	v, err := s.Query(context.Background(), "kept", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Value != 42 {
		t.Fatalf("after reopen kept = %v, want 42", v)
	}
}

// loadSeries appends samples of name{labels} every 15 s over the 10 minutes
// before end, rising by step each time.
func loadSeries(t *testing.T, s *Store, end time.Time, step float64, lbls ...string) {
	t.Helper()
	app := s.Appender(context.Background())
	ls := labels.FromStrings(lbls...)
	for i := 0; i <= 40; i++ {
		ts := end.Add(-time.Duration(40-i) * 15 * time.Second)
		if _, err := app.Append(0, ls, ts.UnixMilli(), float64(i)*step); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func apiClient(t *testing.T, s *Store) v1.API {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	c, err := api.NewClient(api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return v1.NewAPI(c)
}

func TestQueryAPIWithPrometheusClient(t *testing.T) {
	s := openStore(t, Options{})
	end := time.Now().Truncate(time.Second)
	loadSeries(t, s, end, 2, "__name__", "req_total", "flag", "a", "variant", "on")
	loadSeries(t, s, end, 1, "__name__", "req_total", "flag", "a", "variant", "off")
	loadSeries(t, s, end, 5, "__name__", "req_total", "flag", "b", "variant", "on")
	c := apiClient(t, s)
	ctx := context.Background()

	v, _, _, err := c.Query(ctx, `sum by (variant) (req_total{flag="a"})`, end)
	if err != nil {
		t.Fatal(err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 2 {
		t.Fatalf("query result %v, want a vector of 2", v)
	}
	got := map[string]float64{}
	for _, smp := range vec {
		got[string(smp.Metric["variant"])] = float64(smp.Value)
		if !smp.Timestamp.Time().Equal(end) {
			t.Errorf("sample time %v, want %v", smp.Timestamp.Time(), end)
		}
	}
	if got["on"] != 80 || got["off"] != 40 {
		t.Errorf("query values %v, want on=80 off=40", got)
	}

	v, _, _, err = c.Query(ctx, `1 + 1`, end)
	if err != nil {
		t.Fatal(err)
	}
	if sc, ok := v.(*model.Scalar); !ok || sc.Value != 2 {
		t.Errorf("1 + 1 = %v, want scalar 2", v)
	}

	v, _, _, err = c.QueryRange(ctx, `req_total{flag="b"}`, v1.Range{Start: end.Add(-time.Minute), End: end, Step: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(model.Matrix)
	if !ok || len(m) != 1 || len(m[0].Values) != 3 || m[0].Values[2].Value != 200 || m[0].Values[0].Value != 180 {
		t.Fatalf("query_range = %v, want one series 180, 190, 200", v)
	}

	series, _, _, err := c.Series(ctx, []string{`req_total{variant="on"}`}, end.Add(-time.Hour), end)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 || series[0]["flag"] != "a" || series[1]["flag"] != "b" {
		t.Errorf("series = %v, want flags a and b, sorted", series)
	}

	names, _, _, err := c.LabelNames(ctx, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(toStrings(names), ",") != "__name__,flag,variant" {
		t.Errorf("labels = %v", names)
	}
	vals, _, _, err := c.LabelValues(ctx, "flag", []string{`req_total{variant="off"}`}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 1 || vals[0] != "a" {
		t.Errorf("label values of flag for variant off = %v, want [a]", vals)
	}
	vals, _, _, err = c.LabelValues(ctx, "__name__", nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 1 || vals[0] != "req_total" {
		t.Errorf("metric names = %v", vals)
	}
}

func toStrings[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

func TestQueryAPIErrors(t *testing.T) {
	s := openStore(t, Options{})
	c := apiClient(t, s)
	ctx := context.Background()
	_, _, _, err := c.Query(ctx, `sum(`, time.Now())
	var apiErr *v1.Error
	if !asAPIError(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("bad query: err %v, want bad_data", err)
	}
	_, _, _, err = c.QueryRange(ctx, `up`, v1.Range{Start: time.Now(), End: time.Now().Add(-time.Hour), Step: time.Second})
	if !asAPIError(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("end before start: err %v, want bad_data", err)
	}
	_, _, _, err = c.QueryRange(ctx, `up`, v1.Range{Start: time.Now().Add(-24 * time.Hour), End: time.Now(), Step: time.Second})
	if !asAPIError(err, &apiErr) || !strings.Contains(apiErr.Msg, "11000") {
		t.Errorf("too many points: err %v, want the 11000 limit", err)
	}
	_, _, _, err = c.Series(ctx, []string{`{`}, time.Now(), time.Now())
	if !asAPIError(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("bad match[]: err %v, want bad_data", err)
	}

	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/query?query=1&time=soon")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad time: status %d, want 400", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unserved path: status %d, want 404", resp.StatusCode)
	}
}

func asAPIError(err error, target **v1.Error) bool {
	return errors.As(err, target)
}

// TestQueryJSONShape pins the response bytes to Prometheus's format, which
// Grafana parses: values as strings, times as Unix seconds.
func TestQueryJSONShape(t *testing.T) {
	s := openStore(t, Options{})
	app := s.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "m", "a", "b"), 1700000000500, 0.25); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	for query, want := range map[string]string{
		"query=m&time=1700000001":         `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","a":"b"},"value":[1700000001,"0.25"]}]}}`,
		"query=m*Inf&time=1700000001":     `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1700000001,"+Inf"]}]}}`,
		"query=%22x%22&time=1700000001.5": `{"status":"success","data":{"resultType":"string","result":[1700000001.5,"x"]}}`,
		"query=2&time=1700000001":         `{"status":"success","data":{"resultType":"scalar","result":[1700000001,"2"]}}`,
		"query=nothing&time=1700000001":   `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		"query=sum(":                      `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}`,
	} {
		resp, err := http.Get(srv.URL + "/api/v1/query?" + query)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if got := strings.TrimSpace(buf.String()); got != want {
			t.Errorf("%s:\n got %s\nwant %s", query, got, want)
		}
	}
}

// FuzzQueryAPI sends arbitrary parameters to the query endpoints: every
// answer must be Prometheus-shaped JSON, and bad input a client error, never
// a server error or a panic.
func FuzzQueryAPI(f *testing.F) {
	s, err := Open(context.Background(), Options{Dir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	app := s.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "m", "a", "b"), 1700000000000, 1); err != nil {
		f.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	for _, seed := range []struct{ path, query, ts, step string }{
		{"query", "m", "1700000000", ""},
		{"query_range", "rate(m[5m])", "2023-11-14T22:13:20Z", "15s"},
		{"query_range", "m", "1e300", "-1"},
		{"series", "{a=~\"b|c\"}", "NaN", "0.001"},
		{"labels", "m", "", ""},
		{"label/a/values", "{__name__=\"m\"}", "", ""},
	} {
		f.Add(seed.path, seed.query, seed.ts, seed.step)
	}
	f.Fuzz(func(t *testing.T, path, query, ts, step string) {
		form := url.Values{"query": {query}, "match[]": {query}, "time": {ts}, "start": {ts}, "end": {ts}, "step": {step}, "timeout": {"5s"}}
		req := httptest.NewRequest(http.MethodPost, "/api/v1/", strings.NewReader(form.Encode()))
		req.URL.Path = "/api/v1/" + path
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: status %d: %s", path, query, rec.Code, rec.Body)
		}
		var resp struct {
			Status string `json:"status"`
		}
		// Paths the store does not serve get the router's plain 404.
		switch rec.Code {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusMovedPermanently, http.StatusTemporaryRedirect:
		default:
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || (resp.Status != "success" && resp.Status != "error") {
				t.Fatalf("%s %q: status %d, body not Prometheus JSON: %s", path, query, rec.Code, rec.Body)
			}
		}
	})
}

// TestQueryMatrixReturnsRawSamples: a range vector selector returns each
// series' samples in the range as stored, oldest first, and any other result
// type is refused.
func TestQueryMatrixReturnsRawSamples(t *testing.T) {
	s := openStore(t, Options{})
	base := time.UnixMilli(1_800_000_000_000)
	app := s.Appender(context.Background())
	for i, v := range []float64{3, 7, 2, 9} {
		for _, pod := range []string{"a", "b"} {
			if _, err := app.Append(0, labels.FromStrings("__name__", "things_total", "pod", pod), base.Add(time.Duration(i)*15*time.Second).UnixMilli(), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	type series struct {
		labels  labels.Labels
		samples []model.SamplePair
	}
	var m []series
	err := s.QueryMatrix(context.Background(), `things_total{pod="a"}[40s]`, base.Add(45*time.Second), func(ls labels.Labels, samples []model.SamplePair) {
		m = append(m, series{ls, slices.Clone(samples)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].labels.Get("pod") != "a" || len(m[0].samples) != 3 {
		t.Fatalf("matrix = %v, want pod a's last 3 samples", m)
	}
	for i, want := range []float64{7, 2, 9} {
		p := m[0].samples[i]
		if float64(p.Value) != want || p.Timestamp != model.TimeFromUnixNano(base.Add(time.Duration(i+1)*15*time.Second).UnixNano()) {
			t.Errorf("sample %d = %v, want %v at %ds", i, p, want, (i+1)*15)
		}
	}
	err = s.QueryMatrix(context.Background(), `sum(things_total)`, base, func(labels.Labels, []model.SamplePair) {
		t.Error("a series passed for an instant vector query")
	})
	if err == nil || !strings.Contains(err.Error(), "want a matrix") {
		t.Errorf("instant vector query: err %v, want a refusal naming the matrix", err)
	}
}

// TestQueryMatrixSelectsAsTheEngine: a plain range selector, read straight
// from the TSDB, gives what the PromQL engine gives for it: the same series
// and samples, with the range's ends (after ts-range, up to ts), stale
// markers, native histogram samples, series wholly out of range and every
// kind of matcher; and a selector with offset or @ is left to the engine.
func TestQueryMatrixSelectsAsTheEngine(t *testing.T) {
	s := openStore(t, Options{})
	base := time.UnixMilli(1_800_000_000_000)
	at := func(sec int) int64 { return base.Add(time.Duration(sec) * time.Second).UnixMilli() }
	app := s.Appender(context.Background())
	add := func(ls labels.Labels, sec int, v float64) {
		t.Helper()
		if _, err := app.Append(0, ls, at(sec), v); err != nil {
			t.Fatal(err)
		}
	}
	for pod, vs := range map[string][]float64{"a": {3, 7, 2, 9, 4}, "b": {1, 2, 3, math.Float64frombits(value.StaleNaN), 5}, "c": {0, 0, 0, 0, math.NaN()}} {
		for i, v := range vs {
			add(labels.FromStrings("__name__", "things_total", "pod", pod, "zone", "z"+pod), 15*i, v)
		}
	}
	add(labels.FromStrings("__name__", "things_total", "pod", "old"), -600, 1)
	h := &histogram.Histogram{Count: 3, Sum: 1.5, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{3}}
	if _, err := app.AppendHistogram(0, labels.FromStrings("__name__", "things_total", "pod", "native"), at(30), h, nil); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, query := range []string{`things_total[30s]`, `things_total[45s]`, `things_total{pod!="a"}[1h]`, `things_total{zone=~"z[ab]"}[15s]`,
		`{__name__="things_total",pod="c"}[2m]`, `things_total{pod="none"}[1m]`, `things_total[30s] offset 15s`, `things_total[30s] @ 1800000030`} {
		for _, sec := range []int{0, 30, 45, 60, 61, 700} {
			ts := time.UnixMilli(at(sec))
			direct, engine := readMatrix(t, s, query, ts, true), readMatrix(t, s, query, ts, false)
			if direct != engine {
				t.Errorf("%s at %ds:\n%s\nthe engine gives\n%s", query, sec, direct, engine)
			}
		}
	}
	if got := readMatrix(t, s, `things_total{pod="a"}[30s]`, time.UnixMilli(at(45)), true); !strings.HasSuffix(got, "[2 @[1800000030] 9 @[1800000045]]") {
		t.Errorf("pod a over (15 s, 45 s]: %s, want the samples at 30 and 45 s", got)
	}
}

// readMatrix reads a range query's series, each with its samples, sorted:
// directly (QueryMatrix) or through the engine.
func readMatrix(t *testing.T, s *Store, query string, ts time.Time, direct bool) string {
	t.Helper()
	var out []string
	fn := func(ls labels.Labels, samples []model.SamplePair) {
		out = append(out, fmt.Sprintf("%s %v", ls, samples))
	}
	var err error
	if direct {
		err = s.QueryMatrix(context.Background(), query, ts, fn)
	} else {
		err = s.evalMatrix(context.Background(), query, ts, fn)
	}
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
