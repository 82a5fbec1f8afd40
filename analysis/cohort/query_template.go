package cohort

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/vigil-dev/vigil/analysis/judge"
	"github.com/vigil-dev/vigil/sdk/semconv"
)

// placeholder matches {{name}}, with optional spaces inside the braces.
var placeholder = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)

// Placeholders of a custom metric's query template.
const (
	PlaceholderFlag      = "flag"
	PlaceholderTreatment = "treatment"
	PlaceholderControl   = "control"
	PlaceholderWindow    = "window"
)

// QueryTemplate is a custom metric: a PromQL query with placeholders
// {{flag}} (the flag key), {{treatment}} and {{control}} (the variants) and
// {{window}} (the time since the rollout began, as a PromQL duration). The
// query must return an instant vector of event counts over the window, one
// sample per variant, labelled feature_flag_result_variant; for example
//
//	sum by (feature_flag_result_variant) (increase(
//	  checkout_failures_total{feature_flag_key="{{flag}}"}[{{window}}]))
//
// A variant with no sample is unreadable (never a pass), not zero: write the
// query so that it returns 0 when there were no events.
type QueryTemplate struct {
	// Name is the metric's name, the key of judge.CohortCounts.Custom.
	Name string
	text string
}

// ParseQueryTemplate checks a custom metric's template: known placeholders
// only, and valid PromQL returning an instant vector once they are filled.
// Errors name the metric.
func ParseQueryTemplate(name, text string) (*QueryTemplate, error) {
	if strings.TrimSpace(name) == "" {
		return nil, fmt.Errorf("custom metric with query %q: empty name", text)
	}
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("custom metric %q: empty query", name)
	}
	t := &QueryTemplate{Name: name, text: text}
	for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
		switch m[1] {
		case PlaceholderFlag, PlaceholderTreatment, PlaceholderControl, PlaceholderWindow:
		default:
			return nil, fmt.Errorf("custom metric %q: unknown placeholder %s (known: {{flag}}, {{treatment}}, {{control}}, {{window}})", name, m[0])
		}
	}
	if _, err := t.Expand("example-flag", "on", "off", 5*time.Minute); err != nil {
		return nil, err
	}
	return t, nil
}

// Text returns the template as written.
func (t *QueryTemplate) Text() string { return t.text }

// Expand fills the placeholders and checks the query. Values that could
// break out of a PromQL string (quotes, backslashes, line breaks) are
// refused rather than escaped, since where a placeholder sits is unknown.
func (t *QueryTemplate) Expand(flagKey, treatment, control string, window time.Duration) (string, error) {
	for _, v := range []string{flagKey, treatment, control} {
		if strings.ContainsAny(v, "\"'`\\\n\r{}") {
			return "", fmt.Errorf("custom metric %q: value %q cannot be put in a query", t.Name, v)
		}
	}
	if window < time.Millisecond {
		return "", fmt.Errorf("custom metric %q: window %s is shorter than 1ms", t.Name, window)
	}
	values := map[string]string{
		PlaceholderFlag:      flagKey,
		PlaceholderTreatment: treatment,
		PlaceholderControl:   control,
		PlaceholderWindow:    model.Duration(window.Truncate(time.Millisecond)).String(),
	}
	q := placeholder.ReplaceAllStringFunc(t.text, func(m string) string {
		return values[placeholder.FindStringSubmatch(m)[1]]
	})
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return "", fmt.Errorf("custom metric %q: query %q: %w", t.Name, q, err)
	}
	if expr.Type() != parser.ValueTypeVector {
		return "", fmt.Errorf("custom metric %q: query %q returns a %s, want an instant vector", t.Name, q, expr.Type())
	}
	return q, nil
}

// readCustom reads every custom metric with one query per distinct
// template: each flag's expansion is tagged with its key and the parts are
// joined with "or".
func (r *Reader) readCustom(ctx context.Context, now time.Time, flags []FlagQuery, out map[string]Reading, errs map[string][]error) {
	type use struct {
		f FlagQuery
		q string
	}
	var order []string
	byTemplate := map[string][]use{}
	for _, f := range flags {
		for _, t := range f.Custom {
			key := t.Name + "\x00" + t.text
			q, err := t.Expand(f.Flag, f.Treatment, f.Control, now.Sub(f.Since))
			if err != nil {
				errs[f.Flag] = append(errs[f.Flag], fmt.Errorf("flag %s: %w", f.Flag, err))
				continue
			}
			if _, ok := byTemplate[key]; !ok {
				order = append(order, key)
			}
			byTemplate[key] = append(byTemplate[key], use{f, q})
		}
	}
	for _, key := range order {
		uses := byTemplate[key]
		name, _, _ := strings.Cut(key, "\x00")
		parts := make([]string, len(uses))
		for i, u := range uses {
			parts[i] = fmt.Sprintf(`label_replace(%s, %q, %q, "", "")`, u.q, labelFlag, u.f.Flag)
		}
		q := strings.Join(parts, " or ")
		v, err := r.provider.Query(ctx, q, now)
		if err != nil {
			qe := &QueryError{Metric: name, Query: q, Err: err}
			for _, u := range uses {
				errs[u.f.Flag] = append(errs[u.f.Flag], qe)
			}
			continue
		}
		byCohort := counts{}
		for _, s := range v {
			byCohort.add(cohortKey{string(s.Metric[labelFlag]), string(s.Metric[semconv.LabelVariant])}, bucketOf(string(s.Metric[semconv.LabelUnitBucket])), float64(s.Value))
		}
		for _, u := range uses {
			rd := out[u.f.Flag]
			for _, c := range []struct {
				variant string
				counts  *judge.CohortCounts
			}{{u.f.Treatment, &rd.Counts.Treatment}, {u.f.Control, &rd.Counts.Control}} {
				t := byCohort[cohortKey{u.f.Flag, c.variant}]
				if t == nil || !finite(t.total) {
					reason := "no sample labelled " + semconv.LabelVariant + "=" + fmt.Sprintf("%q", c.variant)
					if t != nil {
						reason = fmt.Sprintf("value %v", t.total)
					}
					errs[u.f.Flag] = append(errs[u.f.Flag], fmt.Errorf("flag %s variant %q: custom metric %q: %w: %s", u.f.Flag, c.variant, name, ErrNoData, reason))
					continue
				}
				if c.counts.Custom == nil {
					c.counts.Custom = map[string]float64{}
				}
				c.counts.Custom[name] = t.total
				// Split by unit bucket only where the query kept the
				// label on all it counted, and the built-in counts were
				// split too.
				if c.counts.UnitBuckets != nil && splitByUnit(t) {
					for b := range c.counts.UnitBuckets {
						ub := &c.counts.UnitBuckets[b]
						if ub.Custom == nil {
							ub.Custom = map[string]float64{}
						}
						ub.Custom[name] = t.buckets[b]
					}
				}
			}
			out[u.f.Flag] = rd
		}
	}
}
