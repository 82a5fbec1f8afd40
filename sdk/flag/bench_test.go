package flag

import (
	"fmt"
	"strconv"
	"testing"
)

func benchSnapshot(b *testing.B, f Flag) *Snapshot {
	s, err := NewSnapshot(1, []Flag{f})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkEvaluateRollout(b *testing.B) {
	s := benchSnapshot(b, rolloutFlag("new-checkout", 25))
	ctx := Context{Key: "user-1234567"}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Evaluate("new-checkout", ctx)
	}
}

// BenchmarkEvaluateRules20 evaluates a flag whose 20 rules all fail before
// its rollout decides.
func BenchmarkEvaluateRules20(b *testing.B) {
	f := rolloutFlag("k", 25)
	ops := []Clause{
		{Attribute: "plan", Op: OpIn, Values: Values{"beta", "internal"}},
		{Attribute: "email", Op: OpEndsWith, Values: Values{"@example.com"}},
		{Attribute: "age", Op: OpGT, Values: Values{"99"}},
		{Attribute: "country", Op: OpNotIn, Values: Values{"NL", "DE", "FR"}},
	}
	for i := 0; i < 20; i++ {
		f.Rules = append(f.Rules, Rule{Variant: "on", When: []Clause{ops[i%len(ops)]}})
	}
	s := benchSnapshot(b, f)
	ctx := Context{Key: "user-1234567", Attributes: map[string]any{
		"plan": "free", "email": "a@b.org", "age": 30, "country": "NL",
	}}
	if d := s.Evaluate("k", ctx); d.Reason != ReasonSplit {
		b.Fatalf("a rule matched: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Evaluate("k", ctx)
	}
}

func BenchmarkEvaluateParallel(b *testing.B) {
	flags := make([]Flag, 100)
	for i := range flags {
		flags[i] = rolloutFlag(fmt.Sprintf("flag-%d", i), 50)
	}
	s, err := NewSnapshot(1, flags)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := Context{Key: "user-1"}
		i := 0
		for pb.Next() {
			_ = s.Evaluate(flags[i%len(flags)].Key, ctx)
			i++
		}
	})
}

func BenchmarkBucket(b *testing.B) {
	units := make([]string, 1024)
	for i := range units {
		units[i] = "user-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = Bucket("new-checkout", units[i&1023])
		i++
	}
}

// BenchmarkUnitBucket is the cost the SDKs add to every tracked evaluation
// the split places: one more hash of the unit key.
func BenchmarkUnitBucket(b *testing.B) {
	units := make([]string, 1024)
	for i := range units {
		units[i] = "user-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = UnitBucket(units[i&1023])
		i++
	}
}
