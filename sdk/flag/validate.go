package flag

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// FieldError reports one invalid field of one flag.
type FieldError struct {
	Flag    string // the flag's key, or its position when it has none
	Field   string // a path such as "rules[0].when[1].values"
	Message string
}

// Error describes the problem in one line.
func (e *FieldError) Error() string {
	return fmt.Sprintf("flag %s: %s: %s", e.Flag, e.Field, e.Message)
}

// Errors lists the errors joined in err (errors.Join), however deeply, and
// through one wrap around a join, such as Validate's *FieldError values;
// nil for nil.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Errors(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		if _, ok := u.(interface{ Unwrap() []error }); ok {
			return Errors(u)
		}
	}
	return []error{err}
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks a set of flags as a unit and returns every problem found,
// each a *FieldError, joined with errors.Join.
func Validate(flags []Flag) error {
	var errs []error
	seen := make(map[string]int, len(flags))
	for i := range flags {
		name := flags[i].Key
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		if j, dup := seen[flags[i].Key]; dup && flags[i].Key != "" {
			errs = append(errs, &FieldError{name, "key", fmt.Sprintf("duplicate key, also used by flag #%d", j)})
		}
		seen[flags[i].Key] = i
		for _, e := range checkFlag(&flags[i]) {
			e.Flag = name
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// ValidateFlag checks one flag.
func ValidateFlag(f *Flag) error {
	return Validate([]Flag{*f})
}

func checkFlag(f *Flag) []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !keyPattern.MatchString(f.Key) {
		add("key", "%q must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", f.Key)
	}
	if len(f.Variants) == 0 {
		add("variants", "at least one variant is required")
	}
	for name, raw := range f.Variants {
		if name == "" {
			add("variants", "a variant name is empty")
		}
		if len(raw) == 0 {
			add("variants."+name, "value is missing")
		}
	}
	variant := func(field, name string) {
		if name == "" {
			add(field, "is required")
			return
		}
		if _, ok := f.Variants[name]; !ok {
			add(field, "unknown variant %q", name)
		}
	}
	variant("control", f.Control)
	if f.Treatment != "" || f.Rollout != nil {
		variant("treatment", f.Treatment)
	}
	for i, t := range f.Targets {
		variant(fmt.Sprintf("targets[%d].variant", i), t.Variant)
		if len(t.Units) == 0 {
			add(fmt.Sprintf("targets[%d].units", i), "at least one unit is required")
		}
	}
	for i, r := range f.Rules {
		variant(fmt.Sprintf("rules[%d].variant", i), r.Variant)
		for j, c := range r.When {
			if _, err := compileClause(c); err != nil {
				add(fmt.Sprintf("rules[%d].when[%d]", i, j), "%v", err)
			}
		}
	}
	if f.Rollout != nil {
		if _, err := Millipercent(f.Rollout.Percent); err != nil {
			add("rollout.percent", "%v", err)
		}
	}
	return errs
}

// Millipercent converts a percentage with at most three decimals to
// thousandths of a percent, the unit in which bucketing compares.
func Millipercent(p float64) (uint32, error) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		return 0, fmt.Errorf("%v is out of range 0 to 100", p)
	}
	m := math.Round(p * 1000)
	if math.Abs(p*1000-m) > 1e-6 {
		return 0, fmt.Errorf("%v has more than 3 decimals", p)
	}
	return uint32(m), nil
}

// compileClause prepares a clause for evaluation and reports a bad one.
func compileClause(c Clause) (clause, error) {
	cc := clause{attr: c.Attribute, op: c.Op, strs: c.Values}
	if c.Attribute == "" {
		return cc, errors.New("attribute is required")
	}
	if len(c.Values) == 0 {
		return cc, errors.New("values: at least one value is required")
	}
	switch c.Op {
	case OpIn, OpNotIn:
		if len(c.Values) > 8 {
			cc.set = make(map[string]struct{}, len(c.Values))
			for _, v := range c.Values {
				cc.set[v] = struct{}{}
			}
		}
	case OpStartsWith, OpEndsWith, OpContains:
	case OpMatches:
		cc.res = make([]*regexp.Regexp, len(c.Values))
		for i, v := range c.Values {
			re, err := regexp.Compile(v)
			if err != nil {
				return cc, fmt.Errorf("values[%d]: bad regular expression: %v", i, err)
			}
			cc.res[i] = re
		}
	case OpLT, OpLTE, OpGT, OpGTE:
		cc.nums = make([]float64, len(c.Values))
		for i, v := range c.Values {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(n) {
				return cc, fmt.Errorf("values[%d]: %q is not a number", i, v)
			}
			cc.nums[i] = n
		}
	case OpSemverLT, OpSemverGTE:
		cc.vers = make([]version, len(c.Values))
		for i, v := range c.Values {
			sv, ok := parseVersion(v)
			if !ok {
				return cc, fmt.Errorf("values[%d]: %q is not a semantic version", i, v)
			}
			cc.vers[i] = sv
		}
	case "":
		return cc, errors.New("op is required")
	default:
		return cc, fmt.Errorf("unknown op %q (want in, not_in, starts_with, ends_with, contains, matches, lt, lte, gt, gte, semver_lt or semver_gte)", c.Op)
	}
	return cc, nil
}
