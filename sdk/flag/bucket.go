package flag

import "math/bits"

// BucketingVersion names the bucketing algorithm implemented here and
// specified in docs/bucketing.md. Any change to the hash input, the hash or
// the arithmetic is a new version.
const BucketingVersion = "v1"

// Buckets is the number of buckets a unit can fall into; a percentage with
// three decimals maps to a whole number of buckets.
const Buckets = 100000

// Hash returns MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes of
// salt + "/" + unit, without building that string.
func Hash(salt, unit string) uint32 {
	m := saltPrefix(salt)
	m.writeString(unit)
	return m.sum()
}

// Bucket returns the v1 bucket of unit under salt, in [0, Buckets).
func Bucket(salt, unit string) uint32 {
	return bucketOf(Hash(salt, unit))
}

// UnitBuckets is the number of unit buckets: the SDKs label a tracked flag's
// cohort metrics with a unit's bucket so that the judge can measure how
// unevenly bad events fall across units (users cluster), not only across
// requests. Few buckets keep the series per flag bounded; see docs/sdk.md.
const UnitBuckets = 8

// UnitBucketSalt salts the unit-bucket hash. It differs from every flag's
// salt in use, so a unit's bucket says nothing about its variant and every
// bucket holds both cohorts.
const UnitBucketSalt = "vigil-unit-bucket"

// UnitBucket returns unit's bucket in [0, UnitBuckets):
// (MurmurHash3(UnitBucketSalt + "/" + unit) × UnitBuckets) >> 32, the same
// hash and arithmetic as the variant bucket under a fixed salt.
func UnitBucket(unit string) int {
	m := unitBucketPrefix
	m.writeString(unit)
	return int((uint64(m.sum()) * UnitBuckets) >> 32)
}

// unitBucketPrefix is the hash state after UnitBucketSalt + "/", so that
// UnitBucket, which the SDKs call on every tracked evaluation the split
// places, hashes only the unit key.
var unitBucketPrefix = saltPrefix(UnitBucketSalt)

func bucketOf(h uint32) uint32 {
	return uint32((uint64(h) * Buckets) >> 32)
}

// saltPrefix returns the hash state after salt + "/", which a compiled flag
// keeps so that evaluation hashes only the unit key.
func saltPrefix(salt string) murmur3 {
	var m murmur3
	m.writeString(salt)
	m.writeByte('/')
	return m
}

const (
	murmurC1 = 0xcc9e2d51
	murmurC2 = 0x1b873593
)

// murmur3 is a streaming MurmurHash3 x86 32-bit with seed 0. It lives on the
// stack so that hashing a unit key never allocates.
type murmur3 struct {
	h    uint32
	tail uint32 // pending bytes, little-endian
	nt   uint   // number of pending bytes, 0..3
	n    uint32 // total length
}

func (m *murmur3) writeByte(b byte) {
	m.tail |= uint32(b) << (8 * m.nt)
	m.nt++
	m.n++
	if m.nt == 4 {
		m.mix(m.tail)
		m.tail, m.nt = 0, 0
	}
}

func (m *murmur3) writeString(s string) {
	i := 0
	for ; i < len(s) && m.nt != 0; i++ {
		m.writeByte(s[i])
	}
	for ; i+4 <= len(s); i += 4 {
		m.mix(uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24)
		m.n += 4
	}
	for ; i < len(s); i++ {
		m.writeByte(s[i])
	}
}

func (m *murmur3) mix(k uint32) {
	k *= murmurC1
	k = bits.RotateLeft32(k, 15)
	k *= murmurC2
	m.h ^= k
	m.h = bits.RotateLeft32(m.h, 13)
	m.h = m.h*5 + 0xe6546b64
}

func (m *murmur3) sum() uint32 {
	h := m.h
	if m.nt > 0 {
		k := m.tail * murmurC1
		k = bits.RotateLeft32(k, 15)
		k *= murmurC2
		h ^= k
	}
	h ^= m.n
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
