package sdk

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// constant is a flag that serves value to everyone (no rollout).
func constant(key, value string) flag.Flag {
	return flag.Flag{Key: key, Enabled: true, Control: "v", Variants: map[string]json.RawMessage{"v": json.RawMessage(value)}}
}

func TestTypedEvaluation(t *testing.T) {
	c := staticClient(t, nil,
		constant("b", "true"), constant("s", `"blue"`), constant("f", "2.5"), constant("i", "42"),
		constant("big", "1e300"), constant("j", `{"limit": 3}`), constant("null", "null"))
	ec := unit("u")
	if v := c.Bool(bg, "b", ec, false); !v {
		t.Error("Bool")
	}
	if v := c.String(bg, "s", ec, ""); v != "blue" {
		t.Errorf("String = %q", v)
	}
	if v := c.Float(bg, "f", ec, 0); v != 2.5 {
		t.Errorf("Float = %v", v)
	}
	if v := c.Int(bg, "i", ec, 0); v != 42 {
		t.Errorf("Int = %v", v)
	}
	if v := c.JSON(bg, "j", ec, nil); !reflect.DeepEqual(v, map[string]any{"limit": 3.0}) {
		t.Errorf("JSON = %v", v)
	}
	if v, d := c.JSONDetail(bg, "null", ec, "def"); v != nil || d.Variant != "v" {
		t.Errorf("JSON null variant = %v %+v, want nil served", v, d)
	}

	mismatches := []struct {
		name string
		eval func() (any, Detail)
		def  any
	}{
		{"bool of string", func() (any, Detail) { return c.BoolDetail(bg, "s", ec, true) }, true},
		{"string of bool", func() (any, Detail) { return c.StringDetail(bg, "b", ec, "d") }, "d"},
		{"float of string", func() (any, Detail) { return c.FloatDetail(bg, "s", ec, 1.5) }, 1.5},
		{"int of fraction", func() (any, Detail) { return c.IntDetail(bg, "f", ec, 7) }, int64(7)},
		{"int out of range", func() (any, Detail) { return c.IntDetail(bg, "big", ec, 7) }, int64(7)},
		{"bool of null", func() (any, Detail) { return c.BoolDetail(bg, "null", ec, true) }, true},
	}
	for _, m := range mismatches {
		v, d := m.eval()
		if v != m.def || d.Value != m.def || d.Reason != flag.ReasonError || d.ErrorType != flag.ErrorTypeMismatch || d.Variant != "" {
			t.Errorf("%s: %v %+v, want the default with type_mismatch", m.name, v, d)
		}
	}
	for _, eval := range []func() (any, Detail){
		func() (any, Detail) { return c.BoolDetail(bg, "nope", ec, true) },
		func() (any, Detail) { return c.StringDetail(bg, "nope", ec, "d") },
		func() (any, Detail) { return c.JSONDetail(bg, "nope", ec, "d") },
	} {
		if v, d := eval(); v == nil || d.Value != v || d.ErrorType != flag.ErrorFlagNotFound {
			t.Errorf("unknown flag: %v %+v, want the default with flag_not_found", v, d)
		}
	}
}

func TestMiddlewareKeepsResponseBehaviour(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	c := staticClient(t, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), rollout("a", 100, true))
	var flushed bool
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.Bool(r.Context(), "a", unit("u"), false)
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusAccepted)
		_, flushed = w.(http.Flusher)
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the middleware: %v", err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusAccepted || !rec.Flushed || !flushed {
		t.Errorf("status %d, flushed %v/%v", rec.Code, rec.Flushed, flushed)
	}
	func() {
		defer func() {
			if recover() != http.ErrAbortHandler {
				t.Error("the middleware swallowed a panic")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/panic", nil))
	}()
	equal(t, "requests", counts(t, collect(t, reader)["feature_flag.requests"]), []string{
		"error.type=500,feature_flag.key=a,feature_flag.result.reason=split,feature_flag.result.variant=on" + bucketAttr("u") + " => 1",
		"feature_flag.key=a,feature_flag.result.reason=split,feature_flag.result.variant=on" + bucketAttr("u") + " => 1",
	})
}

func TestDuplicateKeysInSnapshotReported(t *testing.T) {
	s := newStore()
	first, second := rollout("a", 100, false), rollout("a", 0, false)
	first.Version, second.Version = 1, 2
	err := s.replace(3, []flag.Flag{first, second, rollout("b", 0, false)})
	if err == nil || !strings.Contains(err.Error(), "flag a: key: duplicate key (flag #1)") {
		t.Fatalf("replace with a duplicate key: %v", err)
	}
	snap := s.load().snap
	if d := snap.Evaluate("a", unit("u")); d.Version != 1 || d.Value != true {
		t.Errorf("a = %+v, want the first definition", d)
	}
	if _, ok := snap.Flag("b"); !ok {
		t.Error("the other flag of the snapshot was not installed")
	}
}

func TestUpdatedBroadcastsEveryInstall(t *testing.T) {
	s := newStore()
	a, b := s.next(), s.next()
	if err := s.replace(1, nil); err != nil {
		t.Fatal(err)
	}
	for i, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Fatalf("watcher %d was not told of the new snapshot", i)
		}
	}
	c := s.next()
	select {
	case <-c:
		t.Fatal("the channel for the next change is already closed")
	default:
	}
	f := flag.Flag{Key: "k", Variants: map[string]json.RawMessage{"a": json.RawMessage(`1`)}, Control: "a", Version: 2}
	if n, rejected := s.apply([]change{{key: f.Key, version: f.Version, put: &f}}); n != 1 || rejected != nil {
		t.Fatalf("put: %d applied, rejected %v", n, rejected)
	}
	select {
	case <-c:
	default:
		t.Fatal("a put did not close the channel")
	}
}
