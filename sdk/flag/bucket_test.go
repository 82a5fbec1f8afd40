package flag

import (
	"bytes"
	"encoding/json"
	stdflag "flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	refmurmur "github.com/twmb/murmur3"
)

var update = stdflag.Bool("update", false, "rewrite testdata/bucketing-v1.json from the implementation")

// vectorsPath is the language-neutral vector file at the repository root.
var vectorsPath = filepath.Join("..", "..", "testdata", "bucketing-v1.json")

func TestHashSpecVectors(t *testing.T) {
	// The three vectors quoted in docs/bucketing.md.
	for _, tc := range []struct {
		salt, unit string
		hash       uint32
		bucket     uint32
	}{
		{"new-checkout", "user-1", 1707527752, 39756},
		{"search-v2", "ünïcødé-🙂", 1762790369, 41043},
		{"a", "b", 2494077863, 58069},
	} {
		if got := Hash(tc.salt, tc.unit); got != tc.hash {
			t.Errorf("Hash(%q, %q) = %d, want %d", tc.salt, tc.unit, got, tc.hash)
		}
		if got := Bucket(tc.salt, tc.unit); got != tc.bucket {
			t.Errorf("Bucket(%q, %q) = %d, want %d", tc.salt, tc.unit, got, tc.bucket)
		}
	}
}

// TestHashMatchesReference checks the streaming hash, which never builds
// salt+"/"+unit, against an independent MurmurHash3 over the joined bytes at
// every tail length and split point.
func TestHashMatchesReference(t *testing.T) {
	for _, s := range []string{"", "a", "ab", "abc", "abcd", "abcde", "new-checkout", "é"} {
		for n := 0; n < 40; n++ {
			unit := strings.Repeat("xyz🙂", n)[:n]
			want := refmurmur.Sum32([]byte(s + "/" + unit))
			if got := Hash(s, unit); got != want {
				t.Fatalf("Hash(%q, %q) = %d, reference %d", s, unit, got, want)
			}
		}
	}
}

// vectorFile is the shape of testdata/bucketing-v1.json.
type vectorFile struct {
	Version     string           `json:"version"`
	Description string           `json:"description"`
	Vectors     []hashVector     `json:"vectors"`
	Boundaries  []boundaryVector `json:"boundaries"`
}

type hashVector struct {
	Salt   string `json:"salt"`
	Unit   string `json:"unit"`
	Hash   uint32 `json:"hash"`
	Bucket uint32 `json:"bucket"`
}

type boundaryVector struct {
	Salt      string  `json:"salt"`
	Unit      string  `json:"unit"`
	Bucket    uint32  `json:"bucket"`
	Percent   float64 `json:"percent"`
	Treatment bool    `json:"treatment"`
}

func TestBucketingVectorFile(t *testing.T) {
	if *update {
		writeVectorFile(t)
	}
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := DecodeStrict(data, &vf); err != nil {
		t.Fatalf("decode %s: %v", vectorsPath, err)
	}
	if vf.Version != BucketingVersion {
		t.Fatalf("version %q, want %q", vf.Version, BucketingVersion)
	}
	if len(vf.Vectors) < 1000 {
		t.Fatalf("%d vectors, want at least 1000", len(vf.Vectors))
	}
	kinds := map[string]bool{}
	for _, v := range vf.Vectors {
		if h := refmurmur.Sum32([]byte(v.Salt + "/" + v.Unit)); h != v.Hash {
			t.Fatalf("vector %q/%q: reference hash %d, file says %d", v.Salt, v.Unit, h, v.Hash)
		}
		if got := Hash(v.Salt, v.Unit); got != v.Hash {
			t.Errorf("Hash(%q, %q) = %d, want %d", v.Salt, v.Unit, got, v.Hash)
		}
		if got := Bucket(v.Salt, v.Unit); got != v.Bucket {
			t.Errorf("Bucket(%q, %q) = %d, want %d", v.Salt, v.Unit, got, v.Bucket)
		}
		switch {
		case v.Unit == "":
			kinds["empty"] = true
		case strings.ContainsRune(v.Unit, '\u0301'):
			kinds["combining"] = true
		case strings.ContainsRune(v.Unit, '🙂'):
			kinds["emoji"] = true
		case len(v.Unit) > 256:
			kinds["long"] = true
		}
	}
	for _, k := range []string{"empty", "combining", "emoji", "long"} {
		if !kinds[k] {
			t.Errorf("no %s unit among the vectors", k)
		}
	}
	if len(vf.Boundaries) < 10 {
		t.Fatalf("%d boundary vectors, want at least 10", len(vf.Boundaries))
	}
	for _, b := range vf.Boundaries {
		f := Flag{Key: "k", Salt: b.Salt, Enabled: true, Control: "c", Treatment: "t",
			Variants: map[string]json.RawMessage{"c": json.RawMessage(`0`), "t": json.RawMessage(`1`)},
			Rollout:  &Rollout{Percent: b.Percent}}
		s, err := NewSnapshot(1, []Flag{f})
		if err != nil {
			t.Fatal(err)
		}
		d := s.Evaluate("k", Context{Key: b.Unit})
		if (d.Variant == "t") != b.Treatment || Bucket(b.Salt, b.Unit) != b.Bucket {
			t.Errorf("boundary %q/%q at %v%%: got variant %s bucket %d, want treatment=%v bucket %d",
				b.Salt, b.Unit, b.Percent, d.Variant, Bucket(b.Salt, b.Unit), b.Treatment, b.Bucket)
		}
	}
}

// writeVectorFile regenerates the vector file. Hashes come from the
// independent reference implementation, not from the code under test.
func writeVectorFile(t *testing.T) {
	vf := vectorFile{
		Version: BucketingVersion,
		Description: "Vigil bucketing v1 vectors. hash = MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes of salt + \"/\" + unit; " +
			"bucket = (hash * 100000) >> 32. A unit is in the treatment at percent p iff bucket < round(p * 1000). See docs/bucketing.md.",
	}
	add := func(salt, unit string) {
		h := refmurmur.Sum32([]byte(salt + "/" + unit))
		vf.Vectors = append(vf.Vectors, hashVector{salt, unit, h, uint32(uint64(h) * Buckets >> 32)})
	}
	add("new-checkout", "user-1")
	add("search-v2", "ünïcødé-🙂")
	add("a", "b")
	salts := []string{"new-checkout", "search-v2", "", "a/b", "fast-payments", "ß-salt"}
	special := []string{
		"", " ", "/", "//", "0", "-1", "user", "User", "USER",
		"é", "e\u0301", "café", "cafe\u0301", "ü", "u\u0308", "ñandú", "中文用户", "ユーザー", "пользователь", "مستخدم",
		"🙂", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "a🙂b", "\u200b", "tab\there", "line\nbreak", "nul\x00byte", "\U0010FFFF",
		"Z\u0351\u0352\u0353", "a\u0301\u0302\u0303\u0304",
	}
	for _, salt := range salts {
		for _, u := range special {
			add(salt, u)
		}
		for n := 1; n <= 24; n++ {
			add(salt, strings.Repeat("k", n))
		}
		add(salt, strings.Repeat("long-unit-key-", 100))
		add(salt, strings.Repeat("🙂e\u0301", 200))
	}
	for i := 0; len(vf.Vectors) < 1200; i++ {
		add(salts[i%len(salts)], fmt.Sprintf("user-%d", i))
	}
	for _, p := range []float64{0.001, 1, 5, 10, 12.345, 25, 33.333, 50, 99.999, 100} {
		threshold := uint32(math.Round(p * 1000))
		salt := "boundary"
		var in, out bool
		for i := 0; !(in && out) && i < 5_000_000; i++ {
			unit := fmt.Sprintf("unit-%d", i)
			b := uint32(uint64(refmurmur.Sum32([]byte(salt+"/"+unit))) * Buckets >> 32)
			switch {
			case b == threshold-1 && !in && threshold > 0:
				vf.Boundaries = append(vf.Boundaries, boundaryVector{salt, unit, b, p, true})
				in = true
			case b == threshold && !out && threshold < Buckets:
				vf.Boundaries = append(vf.Boundaries, boundaryVector{salt, unit, b, p, false})
				out = true
			}
			if threshold == Buckets {
				out = true
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(vf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBucketMonotonic(t *testing.T) {
	// A unit in the treatment at p% stays in at every q > p%: the decision
	// is bucket < threshold, so this checks that evaluation uses exactly that.
	percents := []float64{0, 0.001, 1, 5, 10, 25, 50, 75, 99.999, 100}
	snaps := make([]*Snapshot, len(percents))
	for i, p := range percents {
		s, err := NewSnapshot(1, []Flag{rolloutFlag("m", p)})
		if err != nil {
			t.Fatal(err)
		}
		snaps[i] = s
	}
	for u := 0; u < 20000; u++ {
		unit := fmt.Sprintf("u%d", u)
		wasIn := false
		for i, s := range snaps {
			in := s.Evaluate("m", Context{Key: unit}).Variant == "on"
			if wasIn && !in {
				t.Fatalf("unit %s in treatment at %v%% but not at %v%%", unit, percents[i-1], percents[i])
			}
			wasIn = in
		}
		if !wasIn {
			t.Fatalf("unit %s not in treatment at 100%%", unit)
		}
	}
}

func TestBucketUniform(t *testing.T) {
	// Chi-square over 100 bins of a million keys; 99 degrees of freedom,
	// the 0.999 quantile is 148.2.
	const n, bins = 1_000_000, 100
	var counts [bins]int
	for i := 0; i < n; i++ {
		counts[Bucket("uniformity", "user-"+itoa(i))*bins/Buckets]++
	}
	want := float64(n) / bins
	chi := 0.0
	for _, c := range counts {
		chi += (float64(c) - want) * (float64(c) - want) / want
	}
	if chi > 148.2 {
		t.Fatalf("chi-square %.1f over %d bins exceeds 148.2", chi, bins)
	}
}

func TestBucketIndependentAcrossSalts(t *testing.T) {
	// At 50% on two flags with different salts, the 2x2 table of who is in
	// which treatment must look independent (chi-square, 1 dof, 0.999
	// quantile 10.83).
	const n = 200_000
	var table [2][2]float64
	for i := 0; i < n; i++ {
		u := "user-" + itoa(i)
		a := Bucket("flag-a", u) < Buckets/2
		b := Bucket("flag-b", u) < Buckets/2
		table[b2i(a)][b2i(b)]++
	}
	chi := 0.0
	for i := 0; i < 2; i++ {
		for j := 0; j < 2; j++ {
			row := table[i][0] + table[i][1]
			col := table[0][j] + table[1][j]
			exp := row * col / n
			chi += (table[i][j] - exp) * (table[i][j] - exp) / exp
		}
	}
	if chi > 10.83 {
		t.Fatalf("chi-square %.2f: treatments of different salts are correlated: %v", chi, table)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func itoa(i int) string { return fmt.Sprint(i) }
