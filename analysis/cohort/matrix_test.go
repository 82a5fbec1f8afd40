package cohort

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigil-dev/vigil/sdk/semconv"
)

// decoded is one series as decodeMatrix passed it.
type decoded struct {
	labels  string
	samples []model.SamplePair
}

// decodeAll decodes body handed over a byte at a time, so that every token
// of it is split between reads of the stream.
func decodeAll(body string) ([]decoded, error) {
	var out []decoded
	err := decodeMatrix(iotest.OneByteReader(strings.NewReader(body)), func(ls labels.Labels, samples []model.SamplePair) {
		out = append(out, decoded{ls.String(), slices.Clone(samples)})
	})
	return out, err
}

func TestDecodeMatrix(t *testing.T) {
	// Labels out of order, an escaped value, a whole-second time, the
	// non-finite values, a native histogram (no float samples) and
	// fields the decoder does not know.
	body := `{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":[
		{"metric":{"variant":"on","__name__":"r_total","path":"/a\"b\\c\u00e9"},"values":[[1700000000,"1"],[1700000000.5,"2.5"],[1700000001.123,"NaN"],[1700000002,"+Inf"]]},
		{"metric":{"__name__":"h"},"histograms":[[1700000000,{"count":"1","sum":"1"}]]},
		{"metric":{},"values":[[1.001,"-Inf"]],"extra":{"a":[1,2]}}
	],"stats":{"x":1}},"infos":[]}`
	got, err := decodeAll(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []decoded{
		{`{__name__="r_total", path="/a\"b\\cé", variant="on"}`, []model.SamplePair{
			{Timestamp: 1_700_000_000_000, Value: 1}, {Timestamp: 1_700_000_000_500, Value: 2.5},
			{Timestamp: 1_700_000_001_123, Value: model.SampleValue(math.NaN())}, {Timestamp: 1_700_000_002_000, Value: model.SampleValue(math.Inf(1))}}},
		{`{}`, []model.SamplePair{{Timestamp: 1001, Value: model.SampleValue(math.Inf(-1))}}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d series %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].labels != want[i].labels || !samePairs(got[i].samples, want[i].samples) {
			t.Errorf("series %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func samePairs(a, b []model.SamplePair) bool {
	return slices.EqualFunc(a, b, func(x, y model.SamplePair) bool {
		return x.Timestamp == y.Timestamp && (x.Value == y.Value || math.IsNaN(float64(x.Value)) && math.IsNaN(float64(y.Value)))
	})
}

func TestDecodeMatrixRefuses(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"an error answer", `{"status":"error","errorType":"bad_data","error":"parse error"}`, "bad_data: parse error"},
		{"a vector", `{"status":"success","data":{"resultType":"vector","result":[]}}`, `result is a "vector", want a matrix`},
		{"a result before its type", `{"status":"success","data":{"result":[],"resultType":"matrix"}}`, `result is a "", want a matrix`},
		{"data before the status", `{"data":{"resultType":"matrix","result":[]},"status":"success"}`, "data before a status of success"},
		{"no data", `{"status":"success"}`, "no data"},
		{"no status", `{}`, `status "", want success`},
		{"a sample without a value", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1]]}]}}`, "series 0: sample without a value"},
		{"an empty sample", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[]]}]}}`, "series 0: empty sample"},
		{"a sample with three parts", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2",3]]}]}}`, "more than a time and a value"},
		{"a value that is no number", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"two"]]}]}}`, `sample value "two"`},
		{"a time out of range", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1e300,"2"]]}]}}`, "sample time"},
		{"a cut answer", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"2"]`, "answer"},
		{"not JSON", `<html>`, "answer"},
	} {
		_, err := decodeAll(tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	_, err := decodeAll(`{"status":"error","errorType":"timeout","error":"query timed out"}`)
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrTimeout {
		t.Errorf("error answer: %v, want a *v1.Error of type timeout", err)
	}
}

// TestQueryMatrixOverHTTP: the provider posts the query and its time, and
// refuses an answer other than 2xx with the API's error, not retrying a bad
// query.
func TestQueryMatrixOverHTTP(t *testing.T) {
	var form []string
	srv, n := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		form = append(form, r.Method+" "+r.URL.Path+" "+r.PostForm.Get("query")+" "+r.PostForm.Get("time"))
		w.Header().Set("Content-Type", "application/json")
		switch i {
		case 0:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 1:
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1700000000,"7"]]}]}}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"nope"}`)
		}
	})
	p := newProvider(t, HTTPOptions{URL: srv.URL})
	var got []decoded
	err := p.QueryMatrix(context.Background(), `x[1m]`, time.UnixMilli(1_700_000_000_250), func(ls labels.Labels, s []model.SamplePair) {
		got = append(got, decoded{ls.String(), slices.Clone(s)})
	})
	if err != nil || len(got) != 1 || got[0].labels != `{a="b"}` || !samePairs(got[0].samples, []model.SamplePair{{Timestamp: 1_700_000_000_000, Value: 7}}) {
		t.Fatalf("503 then a matrix: %v, %v", got, err)
	}
	if want := "POST /api/v1/query x[1m] 1700000000.25"; form[1] != want {
		t.Errorf("request %q, want %q", form[1], want)
	}
	err = p.QueryMatrix(context.Background(), `x[`, time.Now(), func(labels.Labels, []model.SamplePair) { t.Error("a series from an error") })
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData || apiErr.Msg != "nope" || n.Load() != 3 {
		t.Errorf("400: %v after %d requests, want bad_data after 3", err, n.Load())
	}
}

// An answer cut off part way (the connection closed before its declared
// length) is asked for again, and the whole second answer is decoded.
func TestQueryMatrixRetriesAnAnswerCutOff(t *testing.T) {
	full := `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1700000000,"7"]]},{"metric":{"a":"2"},"values":[[1700000000,"9"]]}]}}`
	srv, n := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(full)))
		if i == 0 {
			fmt.Fprint(w, full[:strings.Index(full, `{"metric":{"a":"2"}`)+5])
			return
		}
		fmt.Fprint(w, full)
	})
	p := newProvider(t, HTTPOptions{URL: srv.URL, Backoff: time.Millisecond})
	var got []string
	err := p.QueryMatrix(context.Background(), `x[1m]`, time.Now(), func(ls labels.Labels, _ []model.SamplePair) {
		got = append(got, ls.Get("a"))
	})
	// The first attempt delivered the first series before it was cut off.
	if err != nil || n.Load() != 2 || !slices.Equal(got, []string{"1", "1", "2"}) {
		t.Fatalf("got series %v and %v after %d requests, want 1, then 1 and 2 after 2", got, err, n.Load())
	}
}

// An answer that stops arriving runs out of the attempt's timeout, which
// covers reading the answer, and the error says so.
func TestQueryMatrixTimesOutAStalledAnswer(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := faultServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	p := newProvider(t, HTTPOptions{URL: srv.URL, Timeout: 50 * time.Millisecond, Retries: -1})
	err := p.QueryMatrix(context.Background(), `x[1m]`, time.Now(), func(labels.Labels, []model.SamplePair) {
		t.Error("a series from a stalled answer")
	})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Fatalf("stalled answer: %v, want the attempt's timeout", err)
	}
}

// FuzzDecodeMatrix: any answer is decoded or refused, never a panic, and
// what is decoded agrees with encoding/json's reading of the same answer
// into model.Matrix.
func FuzzDecodeMatrix(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"b":"1","a":"x\"y"},"values":[[1700000000.5,"2"],[1700000001,"NaN"]]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[]},{"metric":{"a":"b"},"values":[[0,"-Inf"]]}]}}`,
		`{"status":"error","errorType":"bad_data","error":"x"}`,
		`{"status":"success","data":{"resultType":"vector","result":[]}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got, err := decodeAll(body)
		if err != nil {
			return
		}
		if foldedKey(body) {
			return // encoding/json matches keys whatever their case
		}
		var std struct {
			Status string `json:"status"`
			Data   struct {
				ResultType string       `json:"resultType"`
				Result     model.Matrix `json:"result"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(body), &std) != nil {
			return
		}
		var want []decoded
		for _, ss := range std.Data.Result {
			if len(ss.Values) == 0 {
				continue
			}
			b := labels.NewScratchBuilder(len(ss.Metric))
			for n, v := range ss.Metric {
				b.Add(string(n), string(v))
			}
			b.Sort()
			want = append(want, decoded{b.Labels().String(), ss.Values})
		}
		if len(got) != len(want) {
			t.Fatalf("decoded %d series %v; encoding/json %d %v", len(got), got, len(want), want)
		}
		for i := range want {
			if got[i].labels != want[i].labels || !samePairs(got[i].samples, want[i].samples) {
				t.Fatalf("series %d = %v; encoding/json %v", i, got[i], want[i])
			}
		}
	})
}

// jsonKey matches an object key in a JSON text.
var jsonKey = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"\s*:`)

// foldedKey reports whether body has a key that equals one of the answer's
// keys only when case is ignored.
func foldedKey(body string) bool {
	for _, m := range jsonKey.FindAllStringSubmatch(body, -1) {
		for _, k := range []string{"status", "data", "resultType", "result", "metric", "values"} {
			if m[1] != k && strings.EqualFold(m[1], k) {
				return true
			}
		}
	}
	return false
}

// BenchmarkQueryMatrixHTTP decodes one read's answer as the scale
// benchmark's Prometheus gives it at 1,000 flags: 32,000 series of the
// SDK's requests counter, nine labels and two samples each, served over
// loopback. "client_golang" is the API client's decoding into a
// model.Matrix, which QueryMatrix used before; "stream" is QueryMatrix.
func BenchmarkQueryMatrixHTTP(b *testing.B) {
	var body strings.Builder
	body.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	n := 0
	for f := range 1000 {
		for _, v := range []string{"control", "treatment"} {
			for bucket := range 8 {
				for _, et := range []string{"", "500"} {
					if n > 0 {
						body.WriteByte(',')
					}
					n++
					fmt.Fprintf(&body, `{"metric":{"__name__":"feature_flag_requests_total",%s"feature_flag_key":"scale-%05d","feature_flag_result_variant":%q,"instance":"127.0.0.1:40123","job":"vigil-scale","service_name":"scale","feature_flag_result_reason":"split","vigil_unit_bucket":"%d"},"values":[[1765030000,"%d"],[1765030010,"%d"]]}`,
						map[bool]string{true: `"error_type":"500",`, false: ""}[et != ""], f, v, bucket, 1000*f, 1000*f+200)
				}
			}
		}
	}
	body.WriteString(`]}}`)
	answer := body.String()
	srv, _ := faultServer(b, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, answer)
	})
	p := newProvider(b, HTTPOptions{URL: srv.URL})
	ctx := context.Background()
	b.Run("client_golang", func(b *testing.B) {
		b.SetBytes(int64(len(answer)))
		for b.Loop() {
			v, _, _, err := p.api.Query(ctx, "x[10s]", time.Now())
			if m, ok := v.(model.Matrix); err != nil || !ok || len(m) != n {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.SetBytes(int64(len(answer)))
		for b.Loop() {
			got := 0
			err := p.QueryMatrix(ctx, "x[10s]", time.Now(), func(ls labels.Labels, _ []model.SamplePair) {
				if ls.Get(semconv.LabelReason) == semconv.ReasonSplit {
					got++
				}
			})
			if err != nil || got != n {
				b.Fatal(err, got)
			}
		}
	})
}
