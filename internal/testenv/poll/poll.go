// Package poll waits, in tests, for conditions that nothing announces: a
// server that becomes ready, a scrape that lands, a state another process
// writes. It checks often at first and then less, so that a quick condition
// is seen at once and a slow one does not load the machine.
package poll

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// maxInterval bounds the wait between two checks.
const maxInterval = 100 * time.Millisecond

// Until calls cond until it returns nil, and fails tb if timeout passes
// first, with what it was waiting for and cond's last error, which should
// say what it saw.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for interval := 5 * time.Millisecond; ; interval = min(2*interval, maxInterval) {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited %v for %s: %v", timeout, what, err)
		}
		time.Sleep(interval)
	}
}

// True is Until for a condition with nothing to report but whether it
// holds.
func True(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Until(tb, timeout, what, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("not yet")
	})
}

// Ready waits until every check of base's /readyz holds.
func Ready(tb testing.TB, timeout time.Duration, base string) {
	tb.Helper()
	Until(tb, timeout, base+" to be ready", func() error { return Readyz(base) })
}

// Readyz asks GET base+"/readyz?strict=true" once: nil when it answers 200,
// that is when every check holds (a plain /readyz answers 200 also while
// the replica is degraded), else what went wrong, for a condition of Until
// that adds to it.
func Readyz(base string) error {
	resp, err := http.Get(base + "/readyz?strict=true")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}
