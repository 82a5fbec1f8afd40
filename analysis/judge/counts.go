package judge

// CohortCounts are cumulative counts for one cohort of one flag, taken from
// counters over a window (usually since the rollout began). Only units placed
// by the rollout split (reason "split") are counted: targeted units are not a
// random sample.
type CohortCounts struct {
	// Requests is every request of the cohort.
	Requests float64
	// Errors is the requests that failed (error.type set).
	Errors float64
	// Slower maps a latency histogram edge, in seconds, to the number of
	// requests slower than it: _count minus _bucket{le=edge}.
	Slower map[float64]float64
	// Custom maps a custom metric's name to its event count for the cohort.
	Custom map[string]float64
	// UnitBuckets holds the same counts split by the unit's bucket
	// (flag.UnitBucket, the SDKs' vigil_unit_bucket label), indexed by
	// bucket; nil when the services do not label it. Units cluster (a bot,
	// a retrying client, a customer with broken data), so the judge
	// measures how unevenly bad events split between the cohorts across
	// buckets, not only across requests. An entry's own UnitBuckets is nil.
	UnitBuckets []CohortCounts
}

// FlagCounts pairs the two cohorts of one flag.
type FlagCounts struct {
	// Flag is the flag's key.
	Flag string
	// Treatment is the cohort served the variant being rolled out.
	Treatment CohortCounts
	// Control is the cohort served the variant it is compared against.
	Control CohortCounts
}
