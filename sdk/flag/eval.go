package flag

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Context is what a flag is evaluated for: a unit (the targeting key, such
// as a user or account id) and attributes that rules can test. Attribute
// values may be strings, booleans or numbers.
type Context struct {
	Key        string
	Attributes map[string]any
}

// Reason says why an evaluation returned its variant. The values are those
// of the OpenTelemetry feature_flag.result.reason attribute.
type Reason string

// Evaluation reasons.
const (
	ReasonDisabled       Reason = "disabled"
	ReasonTargetingMatch Reason = "targeting_match"
	ReasonSplit          Reason = "split"
	ReasonDefault        Reason = "default"
	ReasonError          Reason = "error"
)

// ErrorType says what went wrong when Reason is ReasonError. The values are
// those of OpenFeature's error codes, in lower case as OpenTelemetry's
// error.type attribute writes them.
type ErrorType string

// Evaluation error types.
const (
	ErrorFlagNotFound        ErrorType = "flag_not_found"
	ErrorTargetingKeyMissing ErrorType = "targeting_key_missing"
	ErrorTypeMismatch        ErrorType = "type_mismatch"
	ErrorProviderNotReady    ErrorType = "provider_not_ready"
	ErrorGeneral             ErrorType = "general"
)

// Detail is the full result of one evaluation.
type Detail struct {
	Key string `json:"key"`
	// Value is the variant's value decoded from JSON: nil, bool, float64,
	// string, []any or map[string]any. It is shared: do not modify it.
	Value     any       `json:"value"`
	Variant   string    `json:"variant,omitempty"`
	Reason    Reason    `json:"reason"`
	ErrorType ErrorType `json:"errorType,omitempty"`
	Version   int64     `json:"version,omitempty"`
	// Tracked reports that the flag is under a rollout whose cohorts are
	// measured.
	Tracked bool `json:"tracked,omitempty"`
}

// Snapshot is an immutable, compiled set of flags. Evaluating it takes no
// lock, performs no I/O and does not allocate on the rollout path; updates
// build a new Snapshot.
type Snapshot struct {
	revision int64
	flags    map[string]*Compiled
}

// NewSnapshot validates and compiles flags. On error it returns nil and the
// caller keeps whatever snapshot it had.
func NewSnapshot(revision int64, flags []Flag) (*Snapshot, error) {
	if err := Validate(flags); err != nil {
		return nil, err
	}
	s := &Snapshot{revision: revision, flags: make(map[string]*Compiled, len(flags))}
	for i := range flags {
		c, err := compile(flags[i])
		if err != nil {
			return nil, err
		}
		s.flags[c.def.Key] = c
	}
	return s, nil
}

// Revision is the store revision the snapshot reflects.
func (s *Snapshot) Revision() int64 { return s.revision }

// Len is the number of flags.
func (s *Snapshot) Len() int { return len(s.flags) }

// Flag returns the definition of key.
func (s *Snapshot) Flag(key string) (Flag, bool) {
	c, ok := s.flags[key]
	if !ok {
		return Flag{}, false
	}
	return c.def, true
}

// Lookup returns key's compiled flag, nil when the snapshot has none. A
// caller that keeps data of its own per flag beside a snapshot finds both
// with one map lookup, and evaluates through the Compiled.
func (s *Snapshot) Lookup(key string) *Compiled {
	if s == nil {
		return nil
	}
	return s.flags[key]
}

// Flags returns every definition, sorted by key.
func (s *Snapshot) Flags() []Flag {
	out := make([]Flag, 0, len(s.flags))
	for _, c := range s.flags {
		out = append(out, c.def)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Put returns a copy of s with f added or replaced, and revision set to the
// larger of the two. A flag that fails validation leaves s as it was.
func (s *Snapshot) Put(f Flag) (*Snapshot, error) {
	n, err := s.Update(f.Version, []Flag{f}, nil)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// Delete returns a copy of s without key, at revision max(s, version).
func (s *Snapshot) Delete(key string, version int64) *Snapshot {
	n, _ := s.Update(version, nil, []string{key})
	return n
}

// Update returns a copy of s with put added or replaced and the keys in
// del removed (a key in both is removed), at revision max(s, revision).
// It copies s once for the whole batch, so that following a store whose
// flags change by the thousand costs one copy per batch rather than one
// per change. A flag in put that fails validation is left out, keeping
// its earlier definition if s has one, and the error names it; the copy
// holds every other change.
func (s *Snapshot) Update(revision int64, put []Flag, del []string) (*Snapshot, error) {
	n := &Snapshot{revision: max(s.revision, revision), flags: make(map[string]*Compiled, len(s.flags)+len(put))}
	for k, v := range s.flags {
		n.flags[k] = v
	}
	var errs []error
	for i := range put {
		f := put[i]
		if err := ValidateFlag(&f); err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := compile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.flags[f.Key] = c
	}
	for _, k := range del {
		delete(n.flags, k)
	}
	return n, errors.Join(errs...)
}

// Evaluate evaluates key for ctx. An unknown flag yields ReasonError with
// ErrorFlagNotFound and a nil Value: the caller serves its default.
func (s *Snapshot) Evaluate(key string, ctx Context) Detail {
	var d Detail
	s.EvaluateTo(key, ctx, &d)
	return d
}

// EvaluateTo is Evaluate writing the result into d: a caller that keeps the
// result inside a larger struct saves copying it, which is a good part of
// an evaluation's cost.
func (s *Snapshot) EvaluateTo(key string, ctx Context, d *Detail) {
	if s != nil {
		if c, ok := s.flags[key]; ok {
			c.EvaluateTo(ctx, d)
			return
		}
	}
	*d = Detail{Key: key, Reason: ReasonError, ErrorType: ErrorFlagNotFound}
}

type variant struct {
	name  string
	value any
}

// Compiled is one flag of a Snapshot, ready to evaluate. Every answer it
// can give is built when it is compiled, so that evaluating copies a
// finished result.
type Compiled struct {
	def    Flag
	prefix murmur3 // hash state after the salt and "/"
	// targets maps a unit to its target's answer.
	targets map[string]Detail
	rules   []rule
	// threshold is the rollout's treatment share in thousandths of a
	// percent; rollout is false when the flag has no rollout at all.
	threshold uint32
	rollout   bool

	disabled, byDefault, keyMissing, splitTreatment, splitControl Detail
}

type rule struct {
	answer  Detail
	clauses []clause
}

type clause struct {
	attr string
	op   Op
	strs []string
	set  map[string]struct{}
	nums []float64
	res  []*regexp.Regexp
	vers []version
}

func compile(f Flag) (*Compiled, error) {
	values := make(map[string]variant, len(f.Variants))
	for name, raw := range f.Variants {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, &FieldError{f.Key, "variants." + name, fmt.Sprintf("not valid JSON: %v", err)}
		}
		values[name] = variant{name: name, value: v}
	}
	c := &Compiled{def: f}
	answer := func(variant string, r Reason) Detail {
		v := values[variant]
		return Detail{Key: f.Key, Value: v.value, Variant: v.name, Reason: r, Version: f.Version, Tracked: f.Tracked}
	}
	salt := f.Salt
	if salt == "" {
		salt = f.Key
	}
	c.prefix = saltPrefix(salt)
	for _, t := range f.Targets {
		for _, u := range t.Units {
			if c.targets == nil {
				c.targets = make(map[string]Detail)
			}
			if _, dup := c.targets[u]; !dup {
				c.targets[u] = answer(t.Variant, ReasonTargetingMatch)
			}
		}
	}
	for i, r := range f.Rules {
		cr := rule{answer: answer(r.Variant, ReasonTargetingMatch)}
		for j, cl := range r.When {
			cc, err := compileClause(cl)
			if err != nil {
				return nil, &FieldError{f.Key, fmt.Sprintf("rules[%d].when[%d]", i, j), err.Error()}
			}
			cr.clauses = append(cr.clauses, cc)
		}
		c.rules = append(c.rules, cr)
	}
	if f.Rollout != nil {
		m, err := Millipercent(f.Rollout.Percent)
		if err != nil {
			return nil, &FieldError{f.Key, "rollout.percent", err.Error()}
		}
		c.rollout, c.threshold = true, m
	}
	c.disabled = answer(f.Control, ReasonDisabled)
	c.byDefault = answer(f.Control, ReasonDefault)
	c.keyMissing = answer(f.Control, ReasonError)
	c.keyMissing.ErrorType = ErrorTargetingKeyMissing
	c.splitTreatment = answer(f.Treatment, ReasonSplit)
	c.splitControl = answer(f.Control, ReasonSplit)
	return c, nil
}

// EvaluateTo writes the answer for ctx into d, in the documented order:
// disabled, targets, rules, rollout, default.
func (c *Compiled) EvaluateTo(ctx Context, d *Detail) {
	if !c.def.Enabled {
		*d = c.disabled
		return
	}
	if ctx.Key != "" && c.targets != nil {
		if t, ok := c.targets[ctx.Key]; ok {
			*d = t
			return
		}
	}
	for i := range c.rules {
		if c.rules[i].matches(ctx.Attributes) {
			*d = c.rules[i].answer
			return
		}
	}
	switch {
	case !c.rollout:
		*d = c.byDefault
	case ctx.Key == "":
		*d = c.keyMissing
	default:
		h := c.prefix
		h.writeString(ctx.Key)
		if bucketOf(h.sum()) < c.threshold {
			*d = c.splitTreatment
		} else {
			*d = c.splitControl
		}
	}
}

func (r *rule) matches(attrs map[string]any) bool {
	for i := range r.clauses {
		v, ok := attrs[r.clauses[i].attr]
		if !ok || v == nil || !r.clauses[i].matches(v) {
			return false
		}
	}
	return true
}

func (c *clause) matches(v any) bool {
	switch c.op {
	case OpIn, OpNotIn:
		s := attrString(v)
		found := false
		if c.set != nil {
			_, found = c.set[s]
		} else {
			for _, w := range c.strs {
				if s == w {
					found = true
					break
				}
			}
		}
		return found == (c.op == OpIn)
	case OpStartsWith, OpEndsWith, OpContains:
		s := attrString(v)
		for _, w := range c.strs {
			if (c.op == OpStartsWith && strings.HasPrefix(s, w)) ||
				(c.op == OpEndsWith && strings.HasSuffix(s, w)) ||
				(c.op == OpContains && strings.Contains(s, w)) {
				return true
			}
		}
	case OpMatches:
		s := attrString(v)
		for _, re := range c.res {
			if re.MatchString(s) {
				return true
			}
		}
	case OpLT, OpLTE, OpGT, OpGTE:
		n, ok := attrNumber(v)
		if !ok {
			return false
		}
		for _, w := range c.nums {
			if (c.op == OpLT && n < w) || (c.op == OpLTE && n <= w) ||
				(c.op == OpGT && n > w) || (c.op == OpGTE && n >= w) {
				return true
			}
		}
	case OpSemverLT, OpSemverGTE:
		s, ok := v.(string)
		if !ok {
			return false
		}
		sv, ok := parseVersion(s)
		if !ok {
			return false
		}
		for _, w := range c.vers {
			if cmp := sv.compare(w); (c.op == OpSemverLT && cmp < 0) || (c.op == OpSemverGTE && cmp >= 0) {
				return true
			}
		}
	}
	return false
}

// attrString renders an attribute for the string operators. Strings pass
// through without allocating; other kinds use their JSON spelling.
func attrString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case json.Number:
		return t.String()
	default:
		if n, ok := attrNumber(v); ok {
			return strconv.FormatFloat(n, 'f', -1, 64)
		}
		return fmt.Sprint(v)
	}
}

// attrNumber reads an attribute as a number; strings are parsed.
func attrNumber(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case float32:
		return float64(t), true
	case int:
		return float64(t), true
	case int8:
		return float64(t), true
	case int16:
		return float64(t), true
	case int32:
		return float64(t), true
	case int64:
		return float64(t), true
	case uint:
		return float64(t), true
	case uint8:
		return float64(t), true
	case uint16:
		return float64(t), true
	case uint32:
		return float64(t), true
	case uint64:
		return float64(t), true
	case json.Number:
		n, err := t.Float64()
		return n, err == nil
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		return n, err == nil
	}
	return 0, false
}
