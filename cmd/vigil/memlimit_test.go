package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestLimitMemory: under a container limit of 1000 MiB the heap's soft
// limit is 90% of it; GOMEMLIMIT, when set, wins; a ratio of 0 changes
// nothing; a share outside 0 to 1 is refused.
func TestLimitMemory(t *testing.T) {
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	log := slog.New(slog.DiscardHandler)
	const container = 1000 << 20
	current := func() int64 { return debug.SetMemoryLimit(-1) }

	debug.SetMemoryLimit(math.MaxInt64)
	if err := limitMemory(0, memlimit.Limit(container), log); err != nil || current() != math.MaxInt64 {
		t.Errorf("ratio 0: limit %d (err %v), want none", current(), err)
	}
	if err := limitMemory(0.9, memlimit.Limit(container), log); err != nil || current() != container*9/10 {
		t.Errorf("ratio 0.9 of 1000 MiB: limit %d (err %v), want %d", current(), err, container*9/10)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "300MiB")
	if err := limitMemory(0.9, memlimit.Limit(container), log); err != nil || current() != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set: limit %d (err %v), want it left as it was", current(), err)
	}
	for _, bad := range []float64{-0.1, 1.5, math.NaN()} {
		if err := limitMemory(bad, memlimit.Limit(container), log); err == nil {
			t.Errorf("ratio %v accepted", bad)
		}
	}
}
