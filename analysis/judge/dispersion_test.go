package judge

import "testing"

func TestDispersionByHand(t *testing.T) {
	// Eight looks, at ratio 1:
	//   100/100 requests, 0/4 errors: m = 4, π = 0.5, variance 1, (0-2)² = 4
	//   100/300 requests, 3/1 errors: m = 4, π = 0.25, variance 0.75,
	//     (3-1)²/0.75 = 5.3333
	//   six times 100/100 requests, 1/1 errors: residual 0
	//   χ² = 9.3333 on 7 degrees of freedom: φ = 1.3333
	var d Dispersion
	for _, tk := range [][4]float64{{100, 100, 0, 4}, {100, 300, 3, 1}, {100, 100, 1, 1}, {100, 100, 1, 1},
		{100, 100, 1, 1}, {100, 100, 1, 1}, {100, 100, 1, 1}, {100, 100, 1, 1}} {
		d.add(delta{tk[0], tk[2]}, delta{tk[1], tk[3]}, 1)
	}
	if got := d.Phi(); !approx(got, 1.3333, 1e-4) {
		t.Errorf("phi = %.5f, want 1.3333", got)
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
	// Four buckets of 100 requests a cohort. Treatment's errors 8, 0, 2, 2:
	// its rate is 12/400 = 0.03, each bucket expects 3 with variance
	// 100·0.03·0.97 = 2.91, and the residuals are 25/2.91 = 8.5911,
	// 9/2.91 = 3.0928 and 1/2.91 = 0.3436 twice: 12.3711. Control's 3, 3,
	// 3, 3 add 0. χ² = 12.3711 on (4−1) + (4−1) = 6 degrees of freedom:
	// φ = 2.0619.
	tr := []delta{{100, 8}, {100, 0}, {100, 2}, {100, 2}}
	ct := []delta{{100, 3}, {100, 3}, {100, 3}, {100, 3}}
	u := unitDispersion(tr, ct)
	if u.DOF != 6 || !approx(u.Phi(), 2.0619, 1e-4) {
		t.Errorf("dof %d, phi %.5f; want 6, 2.0619", u.DOF, u.Phi())
	}
	// Two buckets a cohort give 2 degrees of freedom, too few.
	if u := unitDispersion(tr[:2], ct[:2]); u.Known() || u.Phi() != 1 {
		t.Errorf("2 buckets: known %v, phi %v; want unknown, 1", u.Known(), u.Phi())
	}
	// Buckets that hold one cohort only count for that cohort: ten sticky
	// clients, two in treatment, eight in control, erring at different
	// rates, are far more dispersed than independent requests.
	few := unitDispersion([]delta{{500, 20}, {500, 2}}, []delta{{500, 5}, {500, 30}, {500, 11}, {500, 1}})
	if !few.Known() || few.Phi() < 5 {
		t.Errorf("few units: dof %d, phi %v; want known and above 5", few.DOF, few.Phi())
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

func TestUnitDispersionPoolsTheCohorts(t *testing.T) {
	// A treatment of a few units at 1%: one erring unit, whose bucket is
	// also the busiest, so treatment's buckets alone barely stray
	// (χ² = 6.6203 on 5 degrees of freedom, 1.32). Control's many units
	// show how unevenly units err (χ² = 390.6437 on 7). Both cohorts are
	// drawn from the same units, so the estimate pools them:
	// (6.6203 + 390.6437)/12 = 33.1053.
	tr := []delta{{33, 0}, {609, 25}, {15, 0}, {15, 0}, {5, 0}, {0, 0}, {88, 0}, {0, 0}}
	ct := make([]delta, 8)
	for b, e := range []float64{60, 150, 90, 75, 300, 80, 70, 95} {
		ct[b] = delta{9000, e}
	}
	if u := unitDispersion(tr, ct); u.DOF != 12 || !approx(u.Phi(), 33.1053, 1e-4) {
		t.Errorf("dof %d, phi %.4f; want 12, 33.1053", u.DOF, u.Phi())
	}
}
