// Package flag defines Vigil's flag model, its validation, the v1 bucketing
// algorithm and in-memory evaluation. It is shared by the SDK, which evaluates
// flags inside services, and by the controller, which stores and serves them.
package flag

import (
	"encoding/json"
)

// File is the shape of a flags file ("flags as code") and of a bulk apply.
type File struct {
	Flags []Flag `json:"flags"`
}

// Flag is one feature flag as written in a flags file, stored by the
// controller and delivered to SDKs.
type Flag struct {
	Key         string `json:"key"`
	Description string `json:"description,omitempty"`
	// Variants maps a variant name to its value, any JSON value.
	Variants map[string]json.RawMessage `json:"variants"`
	// Control is served when the flag is disabled, the unit is not targeted,
	// falls outside the rollout, or the rollout was rolled back.
	Control string `json:"control"`
	// Treatment is the variant a rollout ramps up.
	Treatment string `json:"treatment,omitempty"`
	Enabled   bool   `json:"enabled"`
	// Salt seeds bucketing; empty means the key. Changing it re-randomizes
	// which units fall in the treatment.
	Salt    string   `json:"salt,omitempty"`
	Targets []Target `json:"targets,omitempty"`
	Rules   []Rule   `json:"rules,omitempty"`
	Rollout *Rollout `json:"rollout,omitempty"`
	// Version grows on every change to the flag. The controller assigns it;
	// in a flags file it is ignored.
	Version int64 `json:"version,omitempty"`
	// Tracked is set by the controller on flags under an active rollout: the
	// SDK records cohort metrics only for tracked flags.
	Tracked bool `json:"tracked,omitempty"`
}

// Target serves Variant to the listed units, before any rule or rollout.
type Target struct {
	Variant string   `json:"variant"`
	Units   []string `json:"units"`
}

// Rule serves Variant when every clause in When matches.
type Rule struct {
	Variant string   `json:"variant"`
	When    []Clause `json:"when"`
}

// Clause compares one attribute of the evaluation context with Values.
// A clause on an attribute the context lacks does not match.
type Clause struct {
	Attribute string `json:"attribute"`
	Op        Op     `json:"op"`
	Values    Values `json:"values"`
}

// Op is a clause operator.
type Op string

// The clause operators. A clause matches when the attribute matches any of
// its values: numeric operators compare as numbers, semver operators as
// semantic versions, and not_in when the attribute equals none of them.
const (
	OpIn         Op = "in"
	OpNotIn      Op = "not_in"
	OpStartsWith Op = "starts_with"
	OpEndsWith   Op = "ends_with"
	OpContains   Op = "contains"
	OpMatches    Op = "matches"
	OpLT         Op = "lt"
	OpLTE        Op = "lte"
	OpGT         Op = "gt"
	OpGTE        Op = "gte"
	OpSemverLT   Op = "semver_lt"
	OpSemverGTE  Op = "semver_gte"
)

// Rollout is the percentage split between treatment and control for the
// units that no target or rule decided.
type Rollout struct {
	// Percent is the treatment share, 0 to 100 with up to 3 decimals.
	Percent float64 `json:"percent"`
	// Plan drives an automated rollout on the controller, which owns its
	// format (controller/plan); SDKs carry it as written and never read it.
	Plan json.RawMessage `json:"plan,omitempty"`
}
