package judge

import "testing"

func TestDispersionByHand(t *testing.T) {
	// Three control ticks of 100 requests with 0, 2 and 7 errors:
	//   p̂ = 9/300 = 0.03, expected 3 a tick
	//   χ² = (0-3)²/3 + (2-3)²/3 + (7-3)²/3 = (9+1+16)/3 = 8.667
	//   χ²/dof = 8.667/2 = 4.333; minus one standard error sqrt(2/2) = 1
	//   φ = 3.333
	var d Dispersion
	for _, e := range []float64{0, 2, 7} {
		d.add(100, e)
	}
	if got := d.Phi(); !approx(got, 3.3333, 1e-4) {
		t.Errorf("phi = %.5f, want 3.3333", got)
	}
}

func TestDispersionDefaultsToOne(t *testing.T) {
	cases := []struct {
		name  string
		ticks [][2]float64
	}{
		{"no ticks", nil},
		{"too few ticks", [][2]float64{{100, 0}, {100, 9}}},
		{"no events", [][2]float64{{100, 0}, {100, 0}, {100, 0}, {100, 0}}},
		{"steadier than Poisson", [][2]float64{{100, 3}, {100, 3}, {100, 3}, {100, 3}}},
		{"empty ticks ignored", [][2]float64{{0, 0}, {0, 0}, {0, 0}, {100, 50}}},
	}
	for _, tc := range cases {
		var d Dispersion
		for _, tk := range tc.ticks {
			d.add(tk[0], tk[1])
		}
		if got := d.Phi(); got != 1 {
			t.Errorf("%s: phi = %v, want 1", tc.name, got)
		}
	}
}
