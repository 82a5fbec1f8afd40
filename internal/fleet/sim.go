package fleet

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
	sdksemconv "github.com/vigil-dev/vigil/sdk/semconv"
)

// SimConfig describes a Simulation: the fleet's traffic and the rollouts
// under way, as Config and Load describe the real fleet's.
type SimConfig struct {
	// Key is the flag whose cohorts the simulation counts.
	Key string
	// Rate is the load's requests per second; they come from Users units
	// (at least one unless the heavy unit sends them all), each as likely
	// as the others, as Load's do.
	Rate  float64
	Users int
	// Control is how every code path behaves, and Treatment how the
	// treatment path of a flag does, as in Config.
	Control   Behaviour
	Treatment map[string]Behaviour
	// HopOverhead is the mean of the exponential time each hop adds to a
	// request beside its service's work: HTTP on loopback, scheduling.
	HopOverhead time.Duration
	// Beside are the other flags under rollout while Key's runs: each
	// serves its treatment to Percent of users until For has passed, when
	// it is rolled back.
	Beside map[string]Beside
	// HeavyShare, when above 0, is the share of requests one more unit
	// sends, as Load's Heavy does. That unit is in control of Key and of
	// every flag beside, and fails in the service BrokenAt names (none
	// when empty), as Config.Broken makes it.
	HeavyShare float64
	BrokenAt   string
}

// Beside is a rollout running beside the simulated one.
type Beside struct {
	Percent float64
	For     time.Duration
}

// Simulation is the fleet's traffic for one flag as its SDKs count it,
// drawn request by request from a seeded source instead of served: each
// request goes gateway -> checkout -> payments; every service that
// evaluates the flag counts it in the unit's cohort and unit bucket, failed
// when it or a service below it failed (a service passes a failure below
// it on at once, without its own work), with the time of the services
// below it added to its own. A request is so counted up to three times in
// one cohort: the clustering the judge meets whenever a flag is evaluated
// along a request chain.
//
// Users' variants and unit buckets are drawn evenly rather than hashed
// from their keys, so that runs with different seeds average over the
// bucketing's draws too.
type Simulation struct {
	cfg     SimConfig
	r       *rand.Rand
	hash    map[string][]float64 // by flag key, each user's variant hash in [0, 1)
	bucket  []int
	heavy   int // the heavy unit's bucket
	hops    []hop
	elapsed time.Duration
	cells   [2][flag.UnitBuckets]judge.CohortCounts // treatment, control
}

// hop is a service of the chain as the simulation meets it, worked out
// once rather than at every request.
type hop struct {
	service string
	// counts says whether the service evaluates Key, and so counts the
	// request in Key's cohorts.
	counts bool
	// treated are the flags the service evaluates whose treatment path
	// runs there and behaves otherwise than control, in order.
	treated []string
}

// NewSimulation draws the users of cfg from r.
func NewSimulation(r *rand.Rand, cfg SimConfig) *Simulation {
	s := &Simulation{cfg: cfg, r: r, hash: map[string][]float64{}, bucket: make([]int, cfg.Users)}
	keys := []string{cfg.Key}
	for key := range cfg.Beside {
		keys = append(keys, key)
	}
	slices.Sort(keys[1:]) // the draws must not depend on map order
	for _, key := range keys {
		s.hash[key] = make([]float64, cfg.Users)
	}
	for i := range cfg.Users {
		s.bucket[i] = r.IntN(flag.UnitBuckets)
		for _, key := range keys {
			s.hash[key][i] = r.Float64()
		}
	}
	s.heavy = r.IntN(flag.UnitBuckets)
	for _, service := range chain() {
		h := hop{service: service}
		for _, key := range evaluates(service) {
			h.counts = h.counts || key == cfg.Key
			if _, ok := cfg.Treatment[key]; ok && owner(key) == service {
				h.treated = append(h.treated, key)
			}
		}
		s.hops = append(s.hops, h)
	}
	for v := range s.cells {
		for b := range s.cells[v] {
			s.cells[v][b].Slower = make(map[float64]float64, len(sdksemconv.DurationBuckets))
		}
	}
	return s
}

// Advance sends d's requests with Key at percent and returns the cohorts'
// counts since the simulation began, with their unit buckets: a
// rolloutsim.Traffic.
func (s *Simulation) Advance(percent float64, d time.Duration) judge.FlagCounts {
	live := map[string]float64{s.cfg.Key: percent}
	for key, b := range s.cfg.Beside {
		if s.elapsed < b.For {
			live[key] = b.Percent
		}
	}
	s.elapsed += d
	for range int(s.cfg.Rate * d.Seconds()) {
		u := -1 // the heavy unit
		if s.cfg.HeavyShare <= 0 || s.r.Float64() >= s.cfg.HeavyShare {
			u = s.r.IntN(len(s.bucket))
		}
		on := func(key string) bool {
			pct, ok := live[key]
			return ok && u >= 0 && s.hash[key][u] < pct/100
		}
		cell := &s.cells[1][s.heavy]
		if u >= 0 {
			cell = &s.cells[1][s.bucket[u]]
			if on(s.cfg.Key) {
				cell = &s.cells[0][s.bucket[u]]
			}
		}
		var took time.Duration
		failed := false
		for _, h := range s.hops {
			if !failed {
				b := s.cfg.Control
				for _, key := range h.treated {
					if on(key) {
						b = s.cfg.Treatment[key]
					}
				}
				fail, work := b.Draw(s.r)
				failed = fail || (u < 0 && h.service == s.cfg.BrokenAt)
				took += work + time.Duration(s.r.ExpFloat64()*float64(s.cfg.HopOverhead))
			}
			if !h.counts {
				continue
			}
			cell.Requests++
			if failed {
				cell.Errors++
			}
			for _, edge := range sdksemconv.DurationBuckets {
				if took.Seconds() > edge {
					cell.Slower[edge]++
				}
			}
		}
	}
	return judge.FlagCounts{Treatment: s.cohort(0), Control: s.cohort(1)}
}

// cohort is cohort v's cumulative counts with their unit buckets; the
// judge copies what it keeps.
func (s *Simulation) cohort(v int) judge.CohortCounts {
	c := judge.CohortCounts{Slower: make(map[float64]float64, len(sdksemconv.DurationBuckets))}
	for _, b := range s.cells[v] {
		c.Requests += b.Requests
		c.Errors += b.Errors
		for edge, n := range b.Slower {
			c.Slower[edge] += n
		}
		c.UnitBuckets = append(c.UnitBuckets, b)
	}
	return c
}
