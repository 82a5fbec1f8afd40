package flag

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	refmurmur "github.com/twmb/murmur3"
)

// unitVectorsPath is the language-neutral unit-bucket vector file; -update
// rewrites it.
var unitVectorsPath = filepath.Join("..", "..", "testdata", "unit-bucket-v1.json")

// unitVectorUnits is how many units the file holds: the first distinct
// units of testdata/bucketing-v1.json, so that both files cover the same
// shapes of unit key (empty, combining marks, emoji, NUL, very long).
const unitVectorUnits = 300

// unitVectorFile is the shape of testdata/unit-bucket-v1.json.
type unitVectorFile struct {
	Version     string       `json:"version"`
	Description string       `json:"description"`
	Salt        string       `json:"salt"`
	Buckets     int          `json:"buckets"`
	Vectors     []unitVector `json:"vectors"`
}

type unitVector struct {
	Unit   string `json:"unit"`
	Hash   uint32 `json:"hash"`
	Bucket int    `json:"bucket"`
}

func TestUnitBucketSpecVectors(t *testing.T) {
	// The three vectors quoted in docs/bucketing.md.
	for _, tc := range []struct {
		unit   string
		hash   uint32
		bucket int
	}{
		{"user-1", 3586549987, 6},
		{"ünïcødé-🙂", 2680576694, 4},
		{"", 1139150941, 2},
	} {
		if got := Hash(UnitBucketSalt, tc.unit); got != tc.hash {
			t.Errorf("Hash(%q, %q) = %d, want %d", UnitBucketSalt, tc.unit, got, tc.hash)
		}
		if got := UnitBucket(tc.unit); got != tc.bucket {
			t.Errorf("UnitBucket(%q) = %d, want %d", tc.unit, got, tc.bucket)
		}
	}
}

// TestUnitBucketVectorFile checks testdata/unit-bucket-v1.json against an
// independent MurmurHash3 and against UnitBucket, and that it holds the
// units it is derived from.
func TestUnitBucketVectorFile(t *testing.T) {
	units := unitVectorUnitsFrom(t)
	if *update {
		writeUnitVectorFile(t, units)
	}
	data, err := os.ReadFile(unitVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vf unitVectorFile
	if err := DecodeStrict(data, &vf); err != nil {
		t.Fatalf("decode %s: %v", unitVectorsPath, err)
	}
	if vf.Version != BucketingVersion || vf.Salt != UnitBucketSalt || vf.Buckets != UnitBuckets {
		t.Fatalf("%s: version %q, salt %q, buckets %d; want %q, %q, %d",
			unitVectorsPath, vf.Version, vf.Salt, vf.Buckets, BucketingVersion, UnitBucketSalt, UnitBuckets)
	}
	var got []string
	seen := map[int]int{}
	for _, v := range vf.Vectors {
		got = append(got, v.Unit)
		if h := refmurmur.Sum32([]byte(UnitBucketSalt + "/" + v.Unit)); h != v.Hash {
			t.Fatalf("unit %q: reference hash %d, file says %d", v.Unit, h, v.Hash)
		}
		if b := int(uint64(v.Hash) * UnitBuckets >> 32); b != v.Bucket {
			t.Fatalf("unit %q: hash %d gives bucket %d, file says %d", v.Unit, v.Hash, b, v.Bucket)
		}
		if b := UnitBucket(v.Unit); b != v.Bucket {
			t.Errorf("UnitBucket(%q) = %d, want %d", v.Unit, b, v.Bucket)
		}
		seen[v.Bucket]++
	}
	if !slices.Equal(got, units) {
		t.Errorf("%s holds %d units, not the first %d distinct units of %s; run go test -update",
			unitVectorsPath, len(got), unitVectorUnits, vectorsPath)
	}
	if len(seen) != UnitBuckets {
		t.Errorf("the vectors reach buckets %v, want all %d", seen, UnitBuckets)
	}
}

// unitVectorUnitsFrom returns the first unitVectorUnits distinct units of
// testdata/bucketing-v1.json, in file order.
func unitVectorUnitsFrom(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := DecodeStrict(data, &vf); err != nil {
		t.Fatalf("decode %s: %v", vectorsPath, err)
	}
	var units []string
	seen := map[string]bool{}
	for _, v := range vf.Vectors {
		if !seen[v.Unit] && len(units) < unitVectorUnits {
			seen[v.Unit] = true
			units = append(units, v.Unit)
		}
	}
	return units
}

// writeUnitVectorFile regenerates the unit-bucket vector file. Hashes come
// from the independent reference implementation, not the code under test.
func writeUnitVectorFile(t *testing.T, units []string) {
	vf := unitVectorFile{
		Version: BucketingVersion,
		Description: "Vigil unit-bucket vectors. hash = MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes of salt + \"/\" + unit; " +
			"bucket = (hash * buckets) >> 32. The SDKs label a tracked flag's cohort metrics of units placed by the split with the bucket, " +
			"attribute vigil.unit_bucket. The units are the first distinct units of bucketing-v1.json. See docs/bucketing.md.",
		Salt:    UnitBucketSalt,
		Buckets: UnitBuckets,
	}
	for _, u := range units {
		h := refmurmur.Sum32([]byte(UnitBucketSalt + "/" + u))
		vf.Vectors = append(vf.Vectors, unitVector{u, h, int(uint64(h) * UnitBuckets >> 32)})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(vf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unitVectorsPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUnitBucketIndependentOfVariant: the unit bucket says nothing about a
// unit's variant, so every bucket holds both cohorts in the rollout's
// proportion. Chi-square of the 2x8 table of treatment by unit bucket at
// 50%, 7 degrees of freedom, 0.999 quantile 24.32; and each bucket's share
// of units within the uniform's chi-square bound (0.999 quantile 24.32 too).
func TestUnitBucketIndependentOfVariant(t *testing.T) {
	const n = 200_000
	var table [2][UnitBuckets]float64
	for i := 0; i < n; i++ {
		u := "user-" + itoa(i)
		table[b2i(Bucket("new-checkout", u) < Buckets/2)][UnitBucket(u)]++
	}
	chi, uniform := 0.0, 0.0
	for j := 0; j < UnitBuckets; j++ {
		col := table[0][j] + table[1][j]
		uniform += (col - n/UnitBuckets) * (col - n/UnitBuckets) / (n / UnitBuckets)
		for i := 0; i < 2; i++ {
			row := 0.0
			for _, c := range table[i] {
				row += c
			}
			exp := row * col / n
			chi += (table[i][j] - exp) * (table[i][j] - exp) / exp
		}
	}
	if chi > 24.32 {
		t.Errorf("chi-square %.2f: treatment and unit bucket are correlated: %v", chi, table)
	}
	if uniform > 24.32 {
		t.Errorf("chi-square %.2f: units are not spread evenly over the buckets: %v", uniform, table)
	}
}
