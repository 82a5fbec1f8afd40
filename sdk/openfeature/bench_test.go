package openfeature

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	of "github.com/open-feature/go-sdk/openfeature"

	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// BenchmarkOpenFeatureBoolean measures a rollout flag evaluated through
// OpenFeature and the provider, against the SDK client's own Bool.
func BenchmarkOpenFeatureBoolean(b *testing.B) {
	path := filepath.Join(b.TempDir(), "flags.json")
	data, _ := json.Marshal(flag.File{Flags: testFlags()[:1]})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	c, err := sdk.New(context.Background(), sdk.Config{FlagsFile: path})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p := NewWithClient(c)
	if err := of.SetNamedProviderAndWait("bench", p); err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown()
	client := of.NewClient("bench")
	units := make([]of.EvaluationContext, 1024)
	ecs := make([]sdk.EvalContext, len(units))
	for i := range units {
		key := "user-" + strconv.Itoa(i*7919)
		units[i] = of.NewEvaluationContext(key, nil)
		ecs[i] = sdk.EvalContext{Key: key}
	}
	ctx := context.Background()
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c.Bool(ctx, "checkout", ecs[i&1023], false)
		}
	})
	flat := make([]of.FlattenedContext, len(units))
	for i, ec := range ecs {
		flat[i] = of.FlattenedContext{of.TargetingKey: ec.Key}
	}
	b.Run("provider", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p.BooleanEvaluation(ctx, "checkout", false, flat[i&1023])
		}
	})
	b.Run("openfeature", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			client.Boolean(ctx, "checkout", false, units[i&1023])
		}
	})
}
