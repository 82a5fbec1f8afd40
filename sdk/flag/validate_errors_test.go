package flag

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrors(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	for _, tc := range []struct {
		name string
		err  error
		want []error
	}{
		{"nil", nil, nil},
		{"one", a, []error{a}},
		{"nested joins", errors.Join(a, errors.Join(b, c)), []error{a, b, c}},
		{"a wrapped join", fmt.Errorf("apply: %w", errors.Join(a, b)), []error{a, b}},
	} {
		got := Errors(tc.err)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}
