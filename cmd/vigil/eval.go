package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/internal/explain"
	"github.com/vigil-dev/vigil/sdk/flag"
)

func newEvalCmd() *cobra.Command {
	var file, units string
	cmd := &cobra.Command{
		Use:   "eval -f FLAGS_FILE KEY UNIT [attr=value ...]",
		Short: "Evaluate a flag for a unit from a flags file and explain the result",
		Long: `Evaluate flag KEY for unit UNIT with the given attributes, exactly as the
SDKs do, and print the detail as JSON: value, variant, reason, error type,
version, and the unit's bucket with the rollout percentage.

With --units - the units are read from standard input, one a line, and UNIT
is omitted: one JSON object is printed per unit.`,
		Example: `  vigil eval -f flags.yaml new-checkout user-42 plan=beta
  cut -f1 users.tsv | vigil eval -f flags.yaml --units - new-checkout country=FR`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError(fmt.Errorf("eval: -f FLAGS_FILE is required"))
			}
			if units != "" && units != "-" {
				return usageError(fmt.Errorf("eval: --units takes only - (standard input), got %q", units))
			}
			need := 2
			if units == "-" {
				need = 1
			}
			if len(args) < need {
				return usageError(fmt.Errorf("eval: want KEY%s, got %d arguments", map[bool]string{true: " UNIT", false: ""}[need == 2], len(args)))
			}
			attrs, err := parseAttrs(args[need:])
			if err != nil {
				return usageError(err)
			}
			f, err := flag.ParseFile(file)
			if err != nil {
				return err
			}
			snap, err := flag.NewSnapshot(0, f.Flags)
			if err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			key := args[0]
			// A flag the file lacks evaluates to the default with
			// FLAG_NOT_FOUND, as in a service; here it is most likely a
			// typo, and a script must not read it as an answer.
			if _, ok := snap.Flag(key); !ok {
				return fmt.Errorf("eval: flag %q is not in %s", key, file)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			if units == "" {
				return enc.Encode(explain.Evaluate(snap, key, flag.Context{Key: args[1], Attributes: attrs}))
			}
			return evalUnits(cmd.InOrStdin(), enc, snap, key, attrs)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "flags file (YAML or JSON)")
	cmd.Flags().StringVar(&units, "units", "", "read units from standard input (-), one a line")
	return cmd
}

func evalUnits(in io.Reader, enc *json.Encoder, snap *flag.Snapshot, key string, attrs map[string]any) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		unit := strings.TrimRight(sc.Text(), "\r")
		if err := enc.Encode(explain.Evaluate(snap, key, flag.Context{Key: unit, Attributes: attrs})); err != nil {
			return fmt.Errorf("eval: write result for line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("eval: read units: %w", err)
	}
	return nil
}

// parseAttrs reads attr=value arguments. Values stay strings: the numeric
// and semver operators parse strings themselves.
func parseAttrs(args []string) (map[string]any, error) {
	if len(args) == 0 {
		return nil, nil
	}
	attrs := make(map[string]any, len(args))
	for i, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("eval: attribute %d %q: want attr=value", i+1, a)
		}
		attrs[k] = v
	}
	return attrs, nil
}
