package judge

import "testing"

func TestDispersionByHand(t *testing.T) {
	// Three looks, at ratio 1:
	//   100/100 requests, 0/4 errors: m = 4, π = 0.5, variance 1, (0-2)² = 4
	//   100/300 requests, 3/1 errors: m = 4, π = 0.25, variance 0.75,
	//     (3-1)²/0.75 = 5.3333
	//   100/100 requests, 1/1 errors: residual 0
	//   χ² = 9.3333 on 2 degrees of freedom: φ = 4.6667
	var d Dispersion
	for _, tk := range [][4]float64{{100, 100, 0, 4}, {100, 300, 3, 1}, {100, 100, 1, 1}} {
		d.add(delta{tk[0], tk[2]}, delta{tk[1], tk[3]}, 1)
	}
	if got := d.Phi(); !approx(got, 4.6667, 1e-4) {
		t.Errorf("phi = %.5f, want 4.6667", got)
	}
}

func TestDispersionDefaultsToOne(t *testing.T) {
	cases := []struct {
		name  string
		ticks [][4]float64
	}{
		{"no ticks", nil},
		{"too few ticks", [][4]float64{{100, 100, 9, 0}, {100, 100, 0, 9}}},
		{"no events", [][4]float64{{100, 100, 0, 0}, {100, 100, 0, 0}, {100, 100, 0, 0}, {100, 100, 0, 0}}},
		{"steadier than binomial", [][4]float64{{100, 100, 3, 3}, {100, 100, 3, 3}, {100, 100, 3, 3}}},
		{"an outage in both cohorts", [][4]float64{{100, 100, 1, 1}, {100, 100, 100, 100}, {100, 100, 1, 1}}},
	}
	for _, tc := range cases {
		var d Dispersion
		for _, tk := range tc.ticks {
			d.add(delta{tk[0], tk[2]}, delta{tk[1], tk[3]}, 1)
		}
		if got := d.Phi(); got != 1 {
			t.Errorf("%s: phi = %v, want 1", tc.name, got)
		}
	}
}

func TestUnitDispersionByHand(t *testing.T) {
	// Four buckets of 100 requests a cohort, errors 5/1, 1/5, 3/3, 3/3:
	// totals 12/12, so the ratio is 1 and π = 0.5 in every bucket.
	//   buckets 0 and 1: m = 6, variance 1.5, (5-3)²/1.5 = 2.6667 each
	//   buckets 2 and 3: residual 0
	//   χ² = 5.3333 on 3 degrees of freedom: φ = 1.7778
	tr := []delta{{100, 5}, {100, 1}, {100, 3}, {100, 3}}
	ct := []delta{{100, 1}, {100, 5}, {100, 3}, {100, 3}}
	u := unitDispersion(tr, ct)
	if u.Buckets != 4 || !approx(u.Phi(), 1.7778, 1e-4) {
		t.Errorf("buckets %d, phi %.5f; want 4, 1.7778", u.Buckets, u.Phi())
	}
	// Three buckets with events are too few for an estimate.
	if u := unitDispersion(tr[:3], ct[:3]); u.Known() || u.Phi() != 1 {
		t.Errorf("3 buckets: known %v, phi %v; want unknown, 1", u.Known(), u.Phi())
	}
}

func TestUnitDispersionSeesAHeavyUnit(t *testing.T) {
	// One unit in treatment's bucket 0 makes 300 errors; every other
	// bucket splits its errors as the traffic does (5% treatment).
	tr := []delta{{500, 305}, {500, 5}, {500, 5}, {500, 5}, {500, 5}, {500, 5}, {500, 5}, {500, 5}}
	ct := make([]delta, 8)
	for b := range ct {
		ct[b] = delta{9500, 95}
	}
	if phi := unitDispersion(tr, ct).Phi(); phi < 20 {
		t.Errorf("phi = %.1f with one heavy unit; want well above 1 (at least 20)", phi)
	}
}
