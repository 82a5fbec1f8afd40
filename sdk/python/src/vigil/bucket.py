"""Bucketing v1 (docs/bucketing.md): which units fall in a rollout."""

from __future__ import annotations

from vigil._murmur import murmur3_32

#: The bucketing algorithm this SDK implements, as Go's flag.BucketingVersion.
BUCKETING_VERSION = "v1"

#: The number of buckets a unit can fall into.
BUCKETS = 100_000

#: The number of unit buckets the cohort metrics of tracked flags are
#: labelled with (Go's flag.UnitBuckets).
UNIT_BUCKETS = 8

#: The salt of the unit-bucket hash (Go's flag.UnitBucketSalt).
UNIT_BUCKET_SALT = "vigil-unit-bucket"


def hash_unit(salt: str, unit: str) -> int:
    """MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes of salt + "/" + unit."""
    return murmur3_32(utf8(salt + "/" + unit))


def utf8(s: str) -> bytes:
    """The UTF-8 bytes of s, with a lone surrogate (which JSON can carry
    but UTF-8 cannot) as U+FFFD, as Go's and JavaScript's decoders read it."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in s).encode("utf-8")


def bucket_of(h: int) -> int:
    """The v1 bucket, in [0, BUCKETS), of a hash."""
    return (h * BUCKETS) >> 32


def bucket(salt: str, unit: str) -> int:
    """The v1 bucket of unit under salt, in [0, BUCKETS)."""
    return bucket_of(hash_unit(salt, unit))


def unit_bucket(unit: str) -> int:
    """The unit's bucket in [0, UNIT_BUCKETS), as Go's flag.UnitBucket."""
    return (hash_unit(UNIT_BUCKET_SALT, unit) * UNIT_BUCKETS) >> 32
