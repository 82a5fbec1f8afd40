package flag_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// TestEvaluationVectorsThroughClient runs every case of
// testdata/evaluation-v1.json through the Go SDK's typed methods, which are
// where a type_mismatch arises, with the flags loaded as a flags file. The
// package's own vector test checks the evaluation under the rule the file
// states; this one checks that the SDK keeps it.
func TestEvaluationVectorsThroughClient(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "evaluation-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Flags []json.RawMessage `json:"flags"`
		Cases []struct {
			Name       string          `json:"name"`
			Flag       string          `json:"flag"`
			Key        string          `json:"targetingKey"`
			Attributes map[string]any  `json:"attributes"`
			Type       string          `json:"type"`
			Default    json.RawMessage `json:"default"`
			Expected   struct {
				Value     json.RawMessage `json:"value"`
				Variant   string          `json:"variant"`
				Reason    flag.Reason     `json:"reason"`
				ErrorType flag.ErrorType  `json:"errorType"`
			} `json:"expected"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	file, _ := json.Marshal(map[string]any{"flags": vf.Flags})
	path := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	typed := 0
	for _, vc := range vf.Cases {
		ec := sdk.EvalContext{Key: vc.Key, Attributes: vc.Attributes}
		def := vc.Default
		if vc.Type != "" {
			typed++
		} else {
			def = json.RawMessage("null")
		}
		var value any
		var d sdk.Detail
		var derr error
		switch vc.Type {
		case "boolean":
			var v bool
			derr = json.Unmarshal(def, &v)
			value, d = c.BoolDetail(ctx, vc.Flag, ec, v)
		case "string":
			var v string
			derr = json.Unmarshal(def, &v)
			value, d = c.StringDetail(ctx, vc.Flag, ec, v)
		case "number":
			var v float64
			derr = json.Unmarshal(def, &v)
			value, d = c.FloatDetail(ctx, vc.Flag, ec, v)
		case "integer":
			var v int64
			derr = json.Unmarshal(def, &v)
			value, d = c.IntDetail(ctx, vc.Flag, ec, v)
		case "object", "":
			var v any
			derr = json.Unmarshal(def, &v)
			value, d = c.JSONDetail(ctx, vc.Flag, ec, v)
		default:
			t.Fatalf("%s: unknown type %q", vc.Name, vc.Type)
		}
		if derr != nil {
			t.Fatalf("%s: default %s: %v", vc.Name, def, derr)
		}
		// The returned value and the detail's must both be the expected
		// one, compared as decoded JSON, so that Int's int64 and the
		// file's number compare as the same number.
		got, inDetail, want := decoded(t, value), decoded(t, d.Value), decoded(t, vc.Expected.Value)
		e := vc.Expected
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(inDetail, want) || d.Variant != e.Variant || d.Reason != e.Reason || d.ErrorType != e.ErrorType {
			t.Errorf("%s: got %v (detail %v) %q %s %s, want %v %q %s %s", vc.Name, got, inDetail, d.Variant, d.Reason, d.ErrorType,
				want, e.Variant, e.Reason, e.ErrorType)
		}
	}
	if typed == 0 {
		t.Fatal("no case asks for a type")
	}
}

// decoded returns v (or the JSON text v holds) as encoding/json decodes it.
func decoded(t *testing.T, v any) any {
	t.Helper()
	raw, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
