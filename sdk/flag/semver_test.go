package flag

import (
	"testing"

	"github.com/Masterminds/semver/v3"
)

// semverSeeds are versions the differential tests start from: valid, loose,
// and almost valid.
var semverSeeds = []string{
	"1.2.3", "v1.2.3", "1.2", "1", "v2", "01.002.0003", "1.2.3-alpha", "1.2.3-alpha.1", "1.2.3-alpha.beta",
	"1.2.3-0", "1.2.3-01", "1.2.3-0a", "1.2.3-rc.10", "1.2.3-rc.9", "1.2.3+build.5", "1.2.3-beta+exp.sha.5114f85",
	"1.2.3-", "1.2.3+", "1.2.3-a..b", "1.2.3.4", "1..2", ".1", "v", "", "V1.2.3", " 1.2.3", "1.2.3 ",
	"18446744073709551615.0.0", "18446744073709551616.0.0", "1.2.3-18446744073709551616", "1.2.3-x-y-z.-",
	"1-2", "1.2-3", "1.2.3-ünï", "1.2.3+a+b", "2.0.0-rc.1", "10.0.0", "1.10.0",
}

// TestSemverMatchesMasterminds checks parsing and ordering against
// Masterminds semver v3's NewVersion and Compare, which the TypeScript SDK
// also follows.
func TestSemverMatchesMasterminds(t *testing.T) {
	for _, a := range semverSeeds {
		checkSemverParse(t, a)
		for _, b := range semverSeeds {
			checkSemverCompare(t, a, b)
		}
	}
}

func FuzzSemverMatchesMasterminds(f *testing.F) {
	for _, s := range semverSeeds {
		f.Add(s, "1.2.3-alpha.1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		checkSemverParse(t, a)
		checkSemverCompare(t, a, b)
	})
}

func checkSemverParse(t *testing.T, s string) {
	t.Helper()
	_, ok := parseVersion(s)
	ref, err := semver.NewVersion(s)
	if ok != (err == nil) {
		t.Fatalf("parseVersion(%q) ok=%v, Masterminds error %v", s, ok, err)
	}
	if ok {
		v, _ := parseVersion(s)
		if v.major != ref.Major() || v.minor != ref.Minor() || v.patch != ref.Patch() || v.pre != ref.Prerelease() {
			t.Fatalf("parseVersion(%q) = %+v, Masterminds %d.%d.%d-%s", s, v, ref.Major(), ref.Minor(), ref.Patch(), ref.Prerelease())
		}
	}
}

func checkSemverCompare(t *testing.T, a, b string) {
	t.Helper()
	va, okA := parseVersion(a)
	vb, okB := parseVersion(b)
	if !okA || !okB {
		return
	}
	ra, _ := semver.NewVersion(a)
	rb, _ := semver.NewVersion(b)
	if got, want := va.compare(vb), ra.Compare(rb); got != want {
		t.Fatalf("compare(%q, %q) = %d, Masterminds %d", a, b, got, want)
	}
}

func TestSemverDoesNotAllocate(t *testing.T) {
	w, _ := parseVersion("2.0.0")
	if n := testing.AllocsPerRun(100, func() {
		v, _ := parseVersion("v1.10.3-rc.1+build.7")
		_ = v.compare(w)
	}); n != 0 {
		t.Fatalf("%v allocations per parse and compare", n)
	}
}
