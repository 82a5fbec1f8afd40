package metricstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// maxPoints is Prometheus's limit on points per series in a range query.
const maxPoints = 11000

// Handler serves the Prometheus query API (APIHandler) and the OTLP receiver
// (OTLPHandler) at /v1/metrics and at Prometheus's path
// /api/v1/otlp/v1/metrics. It answers only those paths (APIPaths and
// OTLPPaths), so it can share a router with other /api/v1 routes.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	api := s.APIHandler()
	for _, p := range APIPaths() {
		mux.Handle(p, api)
	}
	otlp := s.OTLPHandler()
	for _, p := range OTLPPaths() {
		mux.Handle(p, otlp)
	}
	return mux
}

// APIPaths are the paths APIHandler serves; {name} stands for a label name
// (":name" in gin's syntax).
func APIPaths() []string {
	return []string{
		"/api/v1/query",
		"/api/v1/query_range",
		"/api/v1/series",
		"/api/v1/labels",
		"/api/v1/label/{name}/values",
		"/api/v1/metadata",
		"/api/v1/query_exemplars",
	}
}

// OTLPPaths are the paths at which Handler serves OTLPHandler: the OTLP
// default and Prometheus's.
func OTLPPaths() []string {
	return []string{"/v1/metrics", "/api/v1/otlp/v1/metrics"}
}

// APIHandler serves the read side of the Prometheus HTTP API at APIPaths:
// query, query_range, series, labels, label/{name}/values, and an empty
// metadata and query_exemplars, which Grafana asks for. Responses have
// Prometheus's JSON shape, so Grafana's Prometheus data source and
// client_golang's API client can read the store.
func (s *Store) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", s.apiQuery)
	mux.HandleFunc("/api/v1/query_range", s.apiQueryRange)
	mux.HandleFunc("/api/v1/series", s.apiSeries)
	mux.HandleFunc("/api/v1/labels", s.apiLabels)
	mux.HandleFunc("/api/v1/label/{name}/values", s.apiLabelValues)
	mux.HandleFunc("/api/v1/metadata", func(w http.ResponseWriter, r *http.Request) {
		writeData(w, map[string]any{}, nil)
	})
	mux.HandleFunc("/api/v1/query_exemplars", func(w http.ResponseWriter, r *http.Request) {
		writeData(w, []any{}, nil)
	})
	return mux
}

// apiError is an error with Prometheus's errorType and HTTP status.
type apiError struct {
	status int
	kind   string
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }

func badData(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "bad_data", fmt.Errorf(format, args...)}
}

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, resp response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

func writeData(w http.ResponseWriter, data any, warnings []string) {
	writeJSON(w, http.StatusOK, response{Status: "success", Data: data, Warnings: warnings})
}

func writeError(w http.ResponseWriter, status int, kind string, err error) {
	writeJSON(w, status, response{Status: "error", ErrorType: kind, Error: err.Error()})
}

func writeAPIError(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.kind, ae.err)
		return
	}
	writeError(w, http.StatusInternalServerError, "internal", err)
}

// parseForm reads query and form parameters; only GET and POST are allowed.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "bad_data", fmt.Errorf("method %s not allowed", r.Method))
		return false
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("parse form: %w", err))
		return false
	}
	return true
}

// parseTime accepts Unix seconds (with a fraction) or RFC 3339, as
// Prometheus does.
func parseTime(name, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, badData("invalid parameter %q: %q is not a time", name, s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, badData("invalid parameter %q: cannot parse %q to a valid timestamp", name, s)
}

// parseDuration accepts seconds (with a fraction) or a Prometheus duration.
func parseDuration(name, s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d := f * float64(time.Second)
		if math.IsNaN(d) || d >= math.MaxInt64 || d <= math.MinInt64 {
			return 0, badData("invalid parameter %q: %q is not a duration", name, s)
		}
		return time.Duration(d), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, badData("invalid parameter %q: cannot parse %q to a valid duration", name, s)
}

// queryContext applies the optional timeout parameter.
func queryContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	if t := r.Form.Get("timeout"); t != "" {
		d, err := parseDuration("timeout", t)
		if err != nil {
			return nil, nil, err
		}
		if d <= 0 {
			return nil, nil, badData("invalid parameter \"timeout\": must be positive")
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		return ctx, cancel, nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	return ctx, cancel, nil
}

func (s *Store) apiQuery(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	err := func() error {
		ts, err := parseTime("time", r.Form.Get("time"), time.Now())
		if err != nil {
			return err
		}
		ctx, cancel, err := queryContext(r)
		if err != nil {
			return err
		}
		defer cancel()
		q, err := s.engine.NewInstantQuery(ctx, s.read, nil, r.Form.Get("query"), ts)
		if err != nil {
			return badData("invalid parameter \"query\": %v", err)
		}
		return s.runQuery(w, ctx, q, r.Form.Get("query"))
	}()
	if err != nil {
		writeAPIError(w, err)
	}
}

func (s *Store) apiQueryRange(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	err := func() error {
		start, err := parseTime("start", r.Form.Get("start"), time.Time{})
		if err != nil {
			return err
		}
		end, err := parseTime("end", r.Form.Get("end"), time.Time{})
		if err != nil {
			return err
		}
		if start.IsZero() || end.IsZero() {
			return badData("parameters \"start\" and \"end\" are required")
		}
		if end.Before(start) {
			return badData("invalid parameter \"end\": end timestamp must not be before start time")
		}
		step, err := parseDuration("step", r.Form.Get("step"))
		if err != nil {
			return err
		}
		if step <= 0 {
			return badData("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")
		}
		if end.Sub(start)/step > maxPoints {
			return badData("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", maxPoints)
		}
		ctx, cancel, err := queryContext(r)
		if err != nil {
			return err
		}
		defer cancel()
		q, err := s.engine.NewRangeQuery(ctx, s.read, nil, r.Form.Get("query"), start, end, step)
		if err != nil {
			return badData("invalid parameter \"query\": %v", err)
		}
		return s.runQuery(w, ctx, q, r.Form.Get("query"))
	}()
	if err != nil {
		writeAPIError(w, err)
	}
}

// runQuery executes q and writes its result, classifying errors the way
// Prometheus does.
func (s *Store) runQuery(w http.ResponseWriter, ctx context.Context, q promql.Query, query string) error {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		var (
			timeout  promql.ErrQueryTimeout
			canceled promql.ErrQueryCanceled
			storErr  promql.ErrStorage
		)
		switch {
		case errors.As(res.Err, &timeout):
			return &apiError{http.StatusServiceUnavailable, "timeout", res.Err}
		case errors.As(res.Err, &canceled):
			return &apiError{http.StatusServiceUnavailable, "canceled", res.Err}
		case errors.As(res.Err, &storErr):
			return &apiError{http.StatusInternalServerError, "internal", res.Err}
		default:
			return &apiError{http.StatusUnprocessableEntity, "execution", res.Err}
		}
	}
	warnings, infos := res.Warnings.AsStrings(query, 10, 10)
	writeJSON(w, http.StatusOK, response{
		Status:   "success",
		Data:     queryData{ResultType: string(res.Value.Type()), Result: encodeValue(res.Value)},
		Warnings: warnings,
		Infos:    infos,
	})
	return nil
}

// matchers parses every match[] parameter.
func matchers(r *http.Request) ([][]*labels.Matcher, error) {
	p := parser.NewParser(parser.Options{})
	var out [][]*labels.Matcher
	for _, m := range r.Form["match[]"] {
		ms, err := p.ParseMetricSelector(m)
		if err != nil {
			return nil, badData("invalid parameter \"match[]\": %v", err)
		}
		out = append(out, ms)
	}
	return out, nil
}

// timeRange reads start and end, defaulting to all time.
func timeRange(r *http.Request) (mint, maxt int64, err error) {
	start, err := parseTime("start", r.Form.Get("start"), time.Time{})
	if err != nil {
		return 0, 0, err
	}
	end, err := parseTime("end", r.Form.Get("end"), time.Time{})
	if err != nil {
		return 0, 0, err
	}
	mint, maxt = math.MinInt64, math.MaxInt64
	if !start.IsZero() {
		mint = start.UnixMilli()
	}
	if !end.IsZero() {
		maxt = end.UnixMilli()
	}
	if maxt < mint {
		return 0, 0, badData("invalid parameter \"end\": end timestamp must not be before start time")
	}
	return mint, maxt, nil
}

func limitParam(r *http.Request) (int, error) {
	s := r.Form.Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, badData("invalid parameter \"limit\": %q is not a non-negative integer", s)
	}
	return n, nil
}

// truncate applies limit and says so in a warning, as Prometheus does.
func truncate[T any](items []T, limit int) ([]T, []string) {
	if limit > 0 && len(items) > limit {
		return items[:limit], []string{"results truncated due to limit"}
	}
	return items, nil
}

func (s *Store) apiSeries(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	err := func() error {
		sets, err := matchers(r)
		if err != nil {
			return err
		}
		if len(sets) == 0 {
			return badData("no match[] parameter provided")
		}
		mint, maxt, err := timeRange(r)
		if err != nil {
			return err
		}
		limit, err := limitParam(r)
		if err != nil {
			return err
		}
		q, err := s.read.Querier(mint, maxt)
		if err != nil {
			return fmt.Errorf("open querier: %w", err)
		}
		defer q.Close()
		seen := map[string]labels.Labels{}
		hints := &storage.SelectHints{Start: mint, End: maxt, Func: "series"}
		for _, ms := range sets {
			ss := q.Select(r.Context(), false, hints, ms...)
			for ss.Next() {
				ls := ss.At().Labels()
				seen[ls.String()] = ls
			}
			if err := ss.Err(); err != nil {
				return fmt.Errorf("select series: %w", err)
			}
		}
		all := make([]labels.Labels, 0, len(seen))
		for _, ls := range seen {
			all = append(all, ls)
		}
		slices.SortFunc(all, labels.Compare)
		all, warnings := truncate(all, limit)
		out := make([]map[string]string, len(all))
		for i, ls := range all {
			out[i] = ls.Map()
		}
		writeData(w, out, warnings)
		return nil
	}()
	if err != nil {
		writeAPIError(w, err)
	}
}

func (s *Store) apiLabels(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	s.labelsOrValues(w, r, "")
}

func (s *Store) apiLabelValues(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "bad_data", fmt.Errorf("method %s not allowed", r.Method))
		return
	}
	if !parseForm(w, r) {
		return
	}
	name := r.PathValue("name")
	if !model.UTF8Validation.IsValidLabelName(name) {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("invalid label name: %q", name))
		return
	}
	s.labelsOrValues(w, r, name)
}

// labelsOrValues answers /labels when name is empty, else the values of
// label name: the union over every match[] (or over everything).
func (s *Store) labelsOrValues(w http.ResponseWriter, r *http.Request, name string) {
	err := func() error {
		sets, err := matchers(r)
		if err != nil {
			return err
		}
		if len(sets) == 0 {
			sets = [][]*labels.Matcher{nil}
		}
		mint, maxt, err := timeRange(r)
		if err != nil {
			return err
		}
		limit, err := limitParam(r)
		if err != nil {
			return err
		}
		q, err := s.read.Querier(mint, maxt)
		if err != nil {
			return fmt.Errorf("open querier: %w", err)
		}
		defer q.Close()
		union := map[string]struct{}{}
		var annots annotations.Annotations
		for _, ms := range sets {
			var vals []string
			var a annotations.Annotations
			if name == "" {
				vals, a, err = q.LabelNames(r.Context(), nil, ms...)
			} else {
				vals, a, err = q.LabelValues(r.Context(), name, nil, ms...)
			}
			if err != nil {
				return fmt.Errorf("read labels: %w", err)
			}
			annots.Merge(a)
			for _, v := range vals {
				union[v] = struct{}{}
			}
		}
		out := make([]string, 0, len(union))
		for v := range union {
			out = append(out, v)
		}
		slices.Sort(out)
		out, warnings := truncate(out, limit)
		w2, _ := annots.AsStrings("", 10, 0)
		writeData(w, out, append(warnings, w2...))
		return nil
	}()
	if err != nil {
		writeAPIError(w, err)
	}
}

// queryData is the data of a query response.
type queryData struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

// point is a float sample, encoded as Prometheus does: [seconds, "value"].
type point struct {
	t int64
	v float64
}

func (p point) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "[%s,%q]", formatTime(p.t), formatFloat(p.v)), nil
}

// hpoint is a native histogram sample: [seconds, {count, sum, buckets}].
type hpoint struct {
	t int64
	h histogramJSON
}

func (p hpoint) MarshalJSON() ([]byte, error) {
	h, err := json.Marshal(p.h)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "[%s,%s]", formatTime(p.t), h), nil
}

type histogramJSON struct {
	Count   string  `json:"count"`
	Sum     string  `json:"sum"`
	Buckets [][]any `json:"buckets,omitempty"`
}

type vectorSample struct {
	Metric    map[string]string `json:"metric"`
	Value     *point            `json:"value,omitempty"`
	Histogram *hpoint           `json:"histogram,omitempty"`
}

type matrixSeries struct {
	Metric     map[string]string `json:"metric"`
	Values     []point           `json:"values,omitempty"`
	Histograms []hpoint          `json:"histograms,omitempty"`
}

func formatTime(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func encodeValue(v parser.Value) any {
	switch v := v.(type) {
	case promql.Vector:
		out := make([]vectorSample, len(v))
		for i, smp := range v {
			out[i].Metric = smp.Metric.Map()
			if smp.H != nil {
				out[i].Histogram = &hpoint{t: smp.T, h: encodeHistogram(smp.H)}
			} else {
				out[i].Value = &point{t: smp.T, v: smp.F}
			}
		}
		return out
	case promql.Matrix:
		out := make([]matrixSeries, len(v))
		for i, ser := range v {
			out[i].Metric = ser.Metric.Map()
			for _, p := range ser.Floats {
				out[i].Values = append(out[i].Values, point{t: p.T, v: p.F})
			}
			for _, p := range ser.Histograms {
				out[i].Histograms = append(out[i].Histograms, hpoint{t: p.T, h: encodeHistogram(p.H)})
			}
		}
		return out
	case promql.Scalar:
		return point{t: v.T, v: v.V}
	case promql.String:
		return []any{json.RawMessage(formatTime(v.T)), v.V}
	}
	return nil
}

// encodeHistogram writes a native histogram's buckets as Prometheus does:
// [boundary rule, lower, upper, count], where the rule is 0 for (lower,
// upper], 1 for [lower, upper), 2 for (lower, upper) and 3 for [lower, upper].
func encodeHistogram(h *histogram.FloatHistogram) histogramJSON {
	out := histogramJSON{Count: formatFloat(h.Count), Sum: formatFloat(h.Sum)}
	it := h.AllBucketIterator()
	for it.Next() {
		b := it.At()
		if b.Count == 0 {
			continue
		}
		rule := 0
		switch {
		case b.LowerInclusive && b.UpperInclusive:
			rule = 3
		case b.LowerInclusive:
			rule = 1
		case !b.UpperInclusive:
			rule = 2
		}
		out.Buckets = append(out.Buckets, []any{rule, formatFloat(b.Lower), formatFloat(b.Upper), formatFloat(b.Count)})
	}
	return out
}
