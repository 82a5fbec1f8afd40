package main

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// traffic is one flag's traffic as the rollout controller reads it: it
// advances by d with the treatment at percent and returns the cumulative
// counts a look at the end of d reads.
type traffic interface {
	advance(percent float64, d time.Duration) judge.FlagCounts
}

// popSpec describes a user population and what befalls its traffic. Every
// run draws its own users from it.
type popSpec struct {
	// users is how many users send the traffic (besides the heavy one).
	users int
	// activitySigma and errorSigma are the log-normal σ of the users'
	// request rates and error propensities; 0 makes every user alike.
	activitySigma, errorSigma float64
	// heavy is the share of all errors that one more user makes, with
	// heavyTraffic of the requests; 0 means no such user.
	heavy float64
	// ratio multiplies the error rate of every user in treatment.
	ratio float64
	// stall is which looks miss some users' latest counts.
	stall stallMode
	// outage, when set, is when a 30 s outage begins: half of every
	// request fails in both cohorts.
	outage time.Duration
	// latency draws each request's duration (the default plan judges it).
	latency bool
	// chain is how many services along a request chain evaluate the flag
	// and count each request, a failure at the deepest one counted by all
	// of them: 0 or 1 counts each request once.
	chain int
}

// stallMode says which looks see late counts.
type stallMode int

const (
	noStall stallMode = iota
	// stallAlways: at every look, each user's counts since its last
	// report are late (seen at a later look) with probability stallChance.
	stallAlways
	// stallAtStart: the same, in the first stallStartLooks looks only (a
	// controller that restarts as the rollout begins reads partial
	// counts).
	stallAtStart
)

// The population model's fixed parts.
const (
	popRPS      = 1000.0 // requests per second across both cohorts
	popBaseline = 0.01   // share of requests that fail, over the population
	// heavyTraffic is the heavy user's share of the requests.
	heavyTraffic = 0.01
	stallChance  = 0.5
	// stallStartLooks is how many looks stallAtStart affects.
	stallStartLooks = 3
	outageLength    = 30 * time.Second
	outageErrorRate = 0.5
)

// latencyBins are the shares of requests falling in each bin of the
// SDK's duration histogram (semconv.DurationBuckets, the last bin above
// its last edge) under the benchmark's latency model.
var latencyBins = func() []float64 {
	out := make([]float64, len(semconv.DurationBuckets)+1)
	prev := 1.0
	for i, e := range semconv.DurationBuckets {
		s := survival(e)
		out[i] = prev - s
		prev = s
	}
	out[len(out)-1] = prev
	return out
}()

// user is one unit of the population.
type user struct {
	// u is the user's variant hash: it is in treatment while u is below
	// the treatment share, so a ramp only ever adds users to treatment.
	u float64
	// bucket is its unit bucket, independent of u (flag.UnitBucket).
	bucket int
	// rate is its requests per second; errors its failed ones, in control.
	rate, errors float64
}

// cell is the counts of one (variant, unit bucket) cell.
type cell struct {
	requests, errors float64
	// slower counts the requests slower than each edge of
	// semconv.DurationBuckets.
	slower []float64
}

func (c *cell) add(o cell) {
	c.requests += o.requests
	c.errors += o.errors
	for i := range o.slower {
		c.slower[i] += o.slower[i]
	}
}

// Variants index cells.
const (
	treatmentCell = 0
	controlCell   = 1
)

// population is a drawn population's traffic: a traffic source whose
// counts carry CohortCounts.UnitBuckets.
type population struct {
	spec  popSpec
	r     *rand.Rand
	users []user
	// percent is the treatment share the cell rates were computed for.
	percent float64
	// rate and errRate are each cell's requests and errors per second at
	// percent: sums over the users in the cell, recomputed only when the
	// percent changes.
	rate, errRate [2][flag.UnitBuckets]float64
	// seen is what the controller has read so far; late is each user's
	// counts not reported yet (stalls only), by variant.
	seen  [2][flag.UnitBuckets]cell
	late  [][2]cell
	now   time.Duration
	looks int
	// read is the counts last returned, whose maps each look refills
	// (the judge copies what it keeps).
	read judge.FlagCounts
}

// newPopulation draws a population from spec.
func newPopulation(spec popSpec, r *rand.Rand) *population {
	p := &population{spec: spec, r: r, percent: -1}
	logNormal := func(sigma float64) float64 {
		if sigma == 0 {
			return 1
		}
		return math.Exp(sigma*r.NormFloat64() - sigma*sigma/2)
	}
	var reqs, errs float64
	for range spec.users {
		a := logNormal(spec.activitySigma)
		u := user{u: r.Float64(), bucket: r.IntN(flag.UnitBuckets), rate: a, errors: a * logNormal(spec.errorSigma)}
		reqs += u.rate
		errs += u.errors
		p.users = append(p.users, u)
	}
	// Scale the ordinary users to their share of the requests and the
	// errors, then add the heavy user.
	ordinaryReqs := popRPS * (1 - heavyTrafficOf(spec))
	ordinaryErrs := popRPS * popBaseline * (1 - spec.heavy)
	for i := range p.users {
		u := &p.users[i]
		u.rate *= ordinaryReqs / reqs
		u.errors = min(u.rate, u.errors*ordinaryErrs/errs)
	}
	if spec.heavy > 0 {
		rate := popRPS * heavyTraffic
		p.users = append(p.users, user{u: r.Float64(), bucket: r.IntN(flag.UnitBuckets), rate: rate,
			errors: min(rate, popRPS*popBaseline*spec.heavy)})
	}
	for v := range p.seen {
		for b := range p.seen[v] {
			p.seen[v][b] = p.newCell()
		}
	}
	if spec.stall != noStall {
		p.late = make([][2]cell, len(p.users))
		for i := range p.late {
			p.late[i] = [2]cell{p.newCell(), p.newCell()}
		}
	}
	return p
}

func heavyTrafficOf(spec popSpec) float64 {
	if spec.heavy > 0 {
		return heavyTraffic
	}
	return 0
}

func (p *population) newCell() cell {
	if !p.spec.latency {
		return cell{}
	}
	return cell{slower: make([]float64, len(semconv.DurationBuckets))}
}

// errorsOf is user u's errors per second in variant v.
func (p *population) errorsOf(u user, v int) float64 {
	if v == treatmentCell {
		return min(u.rate, u.errors*p.spec.ratio)
	}
	return u.errors
}

// setPercent recomputes the cells' rates for a new treatment share.
func (p *population) setPercent(percent float64) {
	if percent == p.percent {
		return
	}
	p.percent = percent
	p.rate, p.errRate = [2][flag.UnitBuckets]float64{}, [2][flag.UnitBuckets]float64{}
	for _, u := range p.users {
		v := p.variantOf(u)
		p.rate[v][u.bucket] += u.rate
		p.errRate[v][u.bucket] += p.errorsOf(u, v)
	}
}

func (p *population) variantOf(u user) int {
	if u.u < p.percent/100 {
		return treatmentCell
	}
	return controlCell
}

// draw draws the counts of d seconds of traffic at rate requests and
// errRate errors per second, of which outage seconds fail at
// outageErrorRate.
func (p *population) draw(rate, errRate, d, outage float64) cell {
	c := p.newCell()
	if rate <= 0 {
		return c
	}
	n := 0
	if p.spec.latency {
		// Independent Poisson counts per histogram bin are a Poisson
		// count of requests split multinomially over the bins.
		above := 0
		for i := len(latencyBins) - 1; i >= 0; i-- {
			k := poisson(p.r, rate*d*latencyBins[i])
			n += k
			if i > 0 {
				above += k
				c.slower[i-1] = float64(above)
			}
		}
	} else {
		n = poisson(p.r, rate*d)
	}
	// Given the requests, each failed with the cell's error share: a sum
	// of Poisson processes thinned by each user's propensity.
	share := errRate / rate
	out := 0
	if outage > 0 {
		out = binomial(p.r, n, outage/d)
	}
	c.requests = float64(n)
	c.errors = float64(binomial(p.r, n-out, share) + binomial(p.r, out, max(share, outageErrorRate)))
	if k := float64(p.spec.chain); k > 1 {
		c.requests *= k
		c.errors *= k
		for i := range c.slower {
			c.slower[i] *= k
		}
	}
	return c
}

// outageIn is how much of (from, from+d] the outage covers, in seconds.
func (p *population) outageIn(from, d time.Duration) float64 {
	if p.spec.outage == 0 {
		return 0
	}
	lo, hi := max(from, p.spec.outage), min(from+d, p.spec.outage+outageLength)
	return max(0, (hi - lo).Seconds())
}

// stalls reports whether the look now ending withholds late counts.
func (p *population) stalls() bool {
	switch p.spec.stall {
	case stallAlways:
		return true
	case stallAtStart:
		return p.looks <= stallStartLooks
	}
	return false
}

func (p *population) advance(percent float64, d time.Duration) judge.FlagCounts {
	p.setPercent(percent)
	outage := p.outageIn(p.now, d)
	p.now += d
	p.looks++
	if p.spec.stall == noStall {
		for v := range p.seen {
			for b := range p.seen[v] {
				p.seen[v][b].add(p.draw(p.rate[v][b], p.errRate[v][b], d.Seconds(), outage))
			}
		}
		return p.counts()
	}
	// With stalls, each user reports on its own: draw per user, and move
	// its counts to what the controller sees unless it is late this time.
	stalls := p.stalls()
	for i, u := range p.users {
		v := p.variantOf(u)
		p.late[i][v].add(p.draw(u.rate, p.errorsOf(u, v), d.Seconds(), outage))
		if stalls && p.r.Float64() < stallChance {
			continue
		}
		for v := range p.late[i] {
			p.seen[v][u.bucket].add(p.late[i][v])
			p.late[i][v] = p.newCell()
		}
	}
	return p.counts()
}

// counts is what the controller reads now: both cohorts with their unit
// buckets.
func (p *population) counts() judge.FlagCounts {
	if p.read.Treatment.UnitBuckets == nil {
		for _, c := range []*judge.CohortCounts{&p.read.Treatment, &p.read.Control} {
			c.UnitBuckets = make([]judge.CohortCounts, flag.UnitBuckets)
			if p.spec.latency {
				c.Slower = make(map[float64]float64, len(semconv.DurationBuckets))
				for b := range c.UnitBuckets {
					c.UnitBuckets[b].Slower = make(map[float64]float64, len(semconv.DurationBuckets))
				}
			}
		}
	}
	for v, total := range []*judge.CohortCounts{&p.read.Treatment, &p.read.Control} {
		total.Requests, total.Errors = 0, 0
		clear(total.Slower)
		for b, c := range p.seen[v] {
			bc := &total.UnitBuckets[b]
			bc.Requests, bc.Errors = c.requests, c.errors
			total.Requests += c.requests
			total.Errors += c.errors
			for i, e := range semconv.DurationBuckets[:len(c.slower)] {
				bc.Slower[e] = c.slower[i]
				total.Slower[e] += c.slower[i]
			}
		}
	}
	return p.read
}
