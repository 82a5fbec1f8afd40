package crosslang

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// recordedMetric is one instrument as an SDK exported it: the attribute
// keys of each of its points, sorted, and the histogram's boundaries.
type recordedMetric struct {
	Name          string     `json:"name"`
	Unit          string     `json:"unit"`
	AttributeKeys [][]string `json:"attributeKeys"`
	Boundaries    []float64  `json:"boundaries,omitempty"`
}

// normalize orders the points' key lists so that two SDKs that export
// points in different orders compare equal.
func normalize(ms []recordedMetric) []recordedMetric {
	for i := range ms {
		slices.SortFunc(ms[i].AttributeKeys, func(a, b []string) int {
			return strings.Compare(strings.Join(a, ","), strings.Join(b, ","))
		})
	}
	slices.SortFunc(ms, func(a, b recordedMetric) int { return strings.Compare(a.Name, b.Name) })
	return ms
}

// goRecorded records with the Go SDK the same work that
// sdk/js/tools/metrics.ts records with the TypeScript SDK: one scope that
// evaluates a tracked flag and counts a business event, and one that
// evaluates it and fails.
func goRecorded(t *testing.T) []recordedMetric {
	t.Helper()
	flags := filepath.Join(t.TempDir(), "flags.json")
	doc := `{"flags": [{"key": "checkout", "variants": {"off": false, "on": true}, "control": "off", "treatment": "on",
		"enabled": true, "tracked": true, "rollout": {"percent": 100}}]}`
	if err := os.WriteFile(flags, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	c, err := sdk.New(context.Background(), sdk.Config{FlagsFile: flags, MeterProvider: mp, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	unit := sdk.EvalContext{Key: "user-1"}
	ctx, s := c.StartScope(context.Background())
	c.Bool(ctx, "checkout", unit, false)
	c.Track(ctx, "checkout.completed")
	s.End(nil)
	ctx, s = c.StartScope(context.Background())
	c.Bool(ctx, "checkout", unit, false)
	s.End(errors.New("failed on purpose"))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []recordedMetric
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			r := recordedMetric{Name: m.Name, Unit: m.Unit}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					r.AttributeKeys = append(r.AttributeKeys, attributeKeys(p.Attributes))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					r.AttributeKeys = append(r.AttributeKeys, attributeKeys(p.Attributes))
					r.Boundaries = p.Bounds
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", m.Name, m.Data)
			}
			out = append(out, r)
		}
	}
	return normalize(out)
}

func attributeKeys(set attribute.Set) []string {
	var keys []string
	for _, kv := range set.ToSlice() {
		keys = append(keys, string(kv.Key))
	}
	slices.Sort(keys)
	return keys
}

// TestMetricContractSameInGoAndTypeScript requires the TypeScript SDK's
// metric names, attribute keys and duration buckets to be the Go SDK's
// (sdk/metrics.go), both as exported constants and as recorded through
// each language's OpenTelemetry SDK, since the rollout analysis, the
// dashboards and the alerts read every language's cohorts alike.
func TestMetricContractSameInGoAndTypeScript(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", tool(t, "metrics.js"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node metrics.js: %v\n%s", err, stderr.String())
	}
	var js struct {
		Constants map[string]any   `json:"constants"`
		Recorded  []recordedMetric `json:"recorded"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &js); err != nil {
		t.Fatalf("decode node output: %v\n%s", err, stdout.String())
	}

	buckets := make([]any, len(sdk.DurationBuckets))
	for i, b := range sdk.DurationBuckets {
		buckets[i] = b
	}
	want := map[string]any{
		"metricRequests":        sdk.MetricRequests,
		"metricRequestDuration": sdk.MetricRequestDuration,
		"metricEvents":          sdk.MetricEvents,
		"attrKey":               sdk.AttrKey,
		"attrVariant":           sdk.AttrVariant,
		"attrReason":            sdk.AttrReason,
		"attrErrorType":         sdk.AttrErrorType,
		"attrEventName":         sdk.AttrEventName,
		"attrUnitBucket":        sdk.AttrUnitBucket,
		"unitBuckets":           float64(flag.UnitBuckets),
		"unitBucketSalt":        flag.UnitBucketSalt,
		"durationBuckets":       buckets,
		"spanAttributePrefix":   sdk.SpanAttributePrefix,
	}
	for k, w := range want {
		if g, ok := js.Constants[k]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("TypeScript %s = %v, Go has %v", k, g, w)
		}
	}
	for k := range js.Constants {
		if _, ok := want[k]; !ok {
			t.Errorf("TypeScript reports constant %s that this test does not compare", k)
		}
	}

	goRec := goRecorded(t)
	// What Go records must be what sdk/metrics.go names, or the comparison
	// below would only prove that both SDKs agree on something else.
	names := []string{}
	for _, m := range goRec {
		names = append(names, m.Name)
	}
	if wantNames := []string{sdk.MetricEvents, sdk.MetricRequestDuration, sdk.MetricRequests}; !slices.Equal(names, wantNames) {
		t.Fatalf("Go recorded %v, want %v", names, wantNames)
	}
	for _, m := range goRec {
		if m.Name == sdk.MetricRequestDuration && !slices.Equal(m.Boundaries, sdk.DurationBuckets) {
			t.Errorf("Go histogram boundaries %v, want DurationBuckets %v", m.Boundaries, sdk.DurationBuckets)
		}
	}
	jsRec := normalize(js.Recorded)
	if !reflect.DeepEqual(jsRec, goRec) {
		g, _ := json.MarshalIndent(goRec, "", " ")
		j, _ := json.MarshalIndent(jsRec, "", " ")
		t.Errorf("recorded metrics differ\nGo:\n%s\nTypeScript:\n%s", g, j)
	}
}

// TestUnitBucketsSameInGoAndTypeScript records the same units of work in
// both SDKs (sdk/js/tools/metrics.ts with a units file): a tracked flag
// whose units are placed by its split, by targets, or not at all (the empty
// key), and an untracked flag. Every point, with its attribute values, must
// be the same, so that both languages put each unit in the same unit
// bucket, and label the split's cohorts only. The units are those of
// testdata/unit-bucket-v1.json, every shape of key.
func TestUnitBucketsSameInGoAndTypeScript(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "unit-bucket-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Vectors []struct {
			Unit string `json:"unit"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatalf("decode unit-bucket-v1.json: %v", err)
	}
	units := []string{"vip-1", "staff-1"}
	for _, v := range vf.Vectors {
		units = append(units, v.Unit)
	}
	input, err := json.Marshal(map[string][]string{"units": units})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "units.json")
	if err := os.WriteFile(path, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", tool(t, "metrics.js"), path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node metrics.js: %v\n%s", err, stderr.String())
	}
	var js struct {
		Points []string `json:"points"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &js); err != nil {
		t.Fatalf("decode node output: %v\n%s", err, stdout.String())
	}

	goPoints := goUnitPoints(t, units)
	// What Go records must reach every unit bucket and the targeted
	// cohorts, or agreeing would prove little.
	seen := map[string]bool{}
	for _, p := range goPoints {
		if _, after, ok := strings.Cut(p, sdk.AttrUnitBucket+"="); ok {
			seen[after[:1]] = true
		}
		if strings.Contains(p, "reason=targeting_match") {
			seen["targeted"] = true
		}
	}
	if len(seen) != flag.UnitBuckets+1 {
		t.Fatalf("Go points reach only %v of the %d unit buckets and the targets: %q", seen, flag.UnitBuckets, goPoints)
	}
	if !slices.Equal(js.Points, goPoints) {
		t.Errorf("points differ\nGo:         %q\nTypeScript: %q", goPoints, js.Points)
	}
}

// goUnitPoints records with the Go SDK what sdk/js/tools/metrics.ts records
// for a units file, in its "name|key=value,...|count" form, sorted.
func goUnitPoints(t *testing.T, units []string) []string {
	t.Helper()
	onOff := `"variants": {"off": false, "on": true}, "control": "off", "treatment": "on", "enabled": true, "rollout": {"percent": 50}`
	doc := `{"flags": [{"key": "split", ` + onOff + `, "tracked": true,
		"targets": [{"variant": "on", "units": ["vip-1"]}, {"variant": "off", "units": ["staff-1"]}]},
		{"key": "quiet", ` + onOff + `, "tracked": false}]}`
	flags := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(flags, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	c, err := sdk.New(context.Background(), sdk.Config{FlagsFile: flags, MeterProvider: mp, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, u := range units {
		ctx, s := c.StartScope(context.Background())
		c.Bool(ctx, "split", sdk.EvalContext{Key: u}, false)
		c.Bool(ctx, "quiet", sdk.EvalContext{Key: u}, false)
		c.Track(ctx, "paid")
		s.End(nil)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []string
	point := func(name string, set attribute.Set, n int64) {
		var kvs []string
		for _, kv := range set.ToSlice() {
			kvs = append(kvs, string(kv.Key)+"="+kv.Value.Emit())
		}
		slices.Sort(kvs)
		out = append(out, fmt.Sprintf("%s|%s|%d", name, strings.Join(kvs, ","), n))
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					point(m.Name, p.Attributes, p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					point(m.Name, p.Attributes, int64(p.Count))
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	slices.Sort(out)
	return out
}
