// Bucketing v1, specified to the byte in docs/bucketing.md.
//
// JavaScript strings are UTF-16 and its bitwise operators are signed 32-bit,
// the two classic ways SDKs in this language disagree with others. Here every
// string is encoded to UTF-8 while it is hashed (a lone surrogate becomes
// U+FFFD, as TextEncoder and Go's JSON decoder both do), every multiplication
// is Math.imul, and every result is taken unsigned with >>> 0.

/** The bucketing algorithm this SDK implements. */
export const BUCKETING_VERSION = "v1";

/** The number of buckets a unit can fall into. */
export const BUCKETS = 100000;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const TWO_32 = 4294967296;

/**
 * The MurmurHash3 x86 32-bit state after some input: a compiled flag keeps
 * the state after its salt and "/" so that evaluation hashes only the unit.
 */
export interface HashState {
  readonly h: number;
  /** pending bytes, little-endian */
  readonly tail: number;
  /** number of pending bytes, 0 to 3 */
  readonly nt: number;
  /** total length in bytes, modulo 2^32 */
  readonly n: number;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * Continues the hash state with the UTF-8 bytes of s and returns the
 * finished hash as an unsigned 32-bit integer, or, when out is given, writes
 * the unfinished state there and returns 0.
 */
function feed(st: HashState, s: string, out: { h: number; tail: number; nt: number; n: number } | null): number {
  let h = st.h | 0;
  let tail = st.tail | 0;
  let nt = st.nt;
  let n = st.n;
  const len = s.length;
  for (let i = 0; i < len; i++) {
    let c = s.charCodeAt(i);
    let bytes: number; // up to four UTF-8 bytes packed little-endian
    let count: number;
    if (c < 0x80) {
      // Fast path for ASCII: four whole bytes when the tail is empty.
      if (nt === 0 && i + 3 < len) {
        const c1 = s.charCodeAt(i + 1);
        const c2 = s.charCodeAt(i + 2);
        const c3 = s.charCodeAt(i + 3);
        if ((c1 | c2 | c3) < 0x80) {
          h = mix(h, c | (c1 << 8) | (c2 << 16) | (c3 << 24));
          n += 4;
          i += 3;
          continue;
        }
      }
      bytes = c;
      count = 1;
    } else if (c < 0x800) {
      bytes = (0xc0 | (c >> 6)) | ((0x80 | (c & 0x3f)) << 8);
      count = 2;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          bytes =
            (0xf0 | (c >> 18)) |
            ((0x80 | ((c >> 12) & 0x3f)) << 8) |
            ((0x80 | ((c >> 6) & 0x3f)) << 16) |
            ((0x80 | (c & 0x3f)) << 24);
          count = 4;
        } else {
          c = 0xfffd; // lone surrogate
          bytes = (0xe0 | (c >> 12)) | ((0x80 | ((c >> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16);
          count = 3;
        }
      } else {
        bytes = (0xe0 | (c >> 12)) | ((0x80 | ((c >> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16);
        count = 3;
      }
    }
    for (let j = 0; j < count; j++) {
      tail |= ((bytes >>> (8 * j)) & 0xff) << (8 * nt);
      nt++;
      n++;
      if (nt === 4) {
        h = mix(h, tail);
        tail = 0;
        nt = 0;
      }
    }
  }
  n = n >>> 0;
  if (out !== null) {
    out.h = h;
    out.tail = tail;
    out.nt = nt;
    out.n = n;
    return 0;
  }
  if (nt > 0) {
    let k = Math.imul(tail, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const EMPTY: HashState = { h: 0, tail: 0, nt: 0, n: 0 };

/** Returns the hash state after salt + "/". */
export function saltPrefix(salt: string): HashState {
  const out = { h: 0, tail: 0, nt: 0, n: 0 };
  feed(EMPTY, salt + "/", out);
  return Object.freeze(out);
}

/** Finishes a hash that started from a salt prefix with the unit key. */
export function hashFrom(prefix: HashState, unit: string): number {
  return feed(prefix, unit, null);
}

/**
 * Returns MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes of
 * salt + "/" + unit, as an unsigned integer.
 */
export function hash(salt: string, unit: string): number {
  return feed(saltPrefix(salt), unit, null);
}

/**
 * Maps a hash to its bucket in [0, 100000): (h * 100000) >> 32. The product
 * is below 2^53, so it is exact in a double, and dividing by 2^32 only moves
 * the exponent.
 */
export function bucketOf(h: number): number {
  return Math.floor((h * BUCKETS) / TWO_32);
}

/** Returns the v1 bucket of unit under salt. */
export function bucket(salt: string, unit: string): number {
  return bucketOf(hash(salt, unit));
}

/**
 * The number of unit buckets: the cohort metrics of a tracked flag's units
 * placed by the split carry the unit's bucket (ATTR_UNIT_BUCKET), so that
 * the judge can measure how bad events cluster by unit. See docs/sdk.md.
 */
export const UNIT_BUCKETS = 8;

/** The fixed salt of the unit-bucket hash, no flag's salt. */
export const UNIT_BUCKET_SALT = "vigil-unit-bucket";

const UNIT_BUCKET_PREFIX = saltPrefix(UNIT_BUCKET_SALT);

/**
 * Returns unit's bucket in [0, UNIT_BUCKETS): (hash(UNIT_BUCKET_SALT, unit)
 * * 8) >> 32, Go's flag.UnitBucket (docs/bucketing.md, "The unit bucket").
 */
export function unitBucket(unit: string): number {
  return Math.floor((hashFrom(UNIT_BUCKET_PREFIX, unit) * UNIT_BUCKETS) / TWO_32);
}

/**
 * Converts a percentage with at most three decimals to thousandths of a
 * percent, the threshold bucketing compares with, or throws a RangeError.
 * It computes exactly what Go's flag.Millipercent does: p * 1000 is the same
 * IEEE product in both, and for non-negative numbers Math.round and Go's
 * math.Round agree.
 */
export function millipercent(p: number): number {
  if (typeof p !== "number" || Number.isNaN(p) || p < 0 || p > 100) {
    throw new RangeError(`${String(p)} is out of range 0 to 100`);
  }
  const m = Math.round(p * 1000);
  if (Math.abs(p * 1000 - m) > 1e-6) {
    throw new RangeError(`${p} has more than 3 decimals`);
  }
  return m;
}
