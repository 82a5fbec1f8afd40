// Package explain evaluates a flag for a unit exactly as the SDKs do and
// adds what explains a split: the unit's bucket beside the rollout's
// percent. `vigil eval` prints it and the web console shows it.
package explain

import "github.com/vigil-dev/vigil/sdk/flag"

// Result is one evaluation: the detail, the unit it was for, and the
// unit's bucket, which together with the rollout percentage explains a
// split.
type Result struct {
	Unit string `json:"unit"`
	flag.Detail
	// Bucket is the unit's v1 bucket for this flag, in [0, 100000); a split
	// serves the treatment when Bucket < percent*1000.
	Bucket *uint32 `json:"bucket,omitempty"`
	// Percent is the flag's rollout percentage, when it has a rollout.
	Percent *float64 `json:"percent,omitempty"`
}

// Evaluate evaluates flag key of snap for ctx.
func Evaluate(snap *flag.Snapshot, key string, ctx flag.Context) Result {
	r := Result{Unit: ctx.Key, Detail: snap.Evaluate(key, ctx)}
	// An empty unit key never reaches bucketing (docs/bucketing.md), so a
	// bucket beside it would explain a decision that was not made.
	if f, ok := snap.Flag(key); ok && f.Rollout != nil && ctx.Key != "" {
		salt := f.Salt
		if salt == "" {
			salt = f.Key
		}
		b, p := flag.Bucket(salt, ctx.Key), f.Rollout.Percent
		r.Bucket, r.Percent = &b, &p
	}
	return r
}
