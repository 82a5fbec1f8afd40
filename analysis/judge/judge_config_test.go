package judge

import "testing"

// TestConfigFromPlan, TestValidateFlags: moved with the plan to
// controller/plan (legacy_test.go).

func TestNullOfLowerIsWorse(t *testing.T) {
	cases := []struct {
		m    MetricConfig
		want float64
	}{
		{MetricConfig{}, 1},
		{MetricConfig{Tolerance: 1.2}, 1.2},
		{MetricConfig{Direction: LowerIsWorse, Tolerance: 0.8}, 0.8},
		{MetricConfig{Direction: LowerIsWorse, Tolerance: 1.25}, 0.8},
	}
	for _, tc := range cases {
		if got := tc.m.null(); got != tc.want {
			t.Errorf("%+v: null %v, want %v", tc.m, got, tc.want)
		}
	}
}
