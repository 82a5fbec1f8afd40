"""MurmurHash3, x86 32-bit variant, seed 0: the hash of bucketing v1.

docs/bucketing.md specifies it to the byte. The arithmetic is written out
here (the standard library has no MurmurHash3) so that the SDK has no
compiled dependency; the vectors in testdata/bucketing-v1.json check it.
"""

from __future__ import annotations

import struct

_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_MASK = 0xFFFFFFFF


def murmur3_32(data: bytes) -> int:
    """Returns MurmurHash3 x86 32-bit with seed 0 of data, unsigned."""
    n = len(data)
    blocks = n >> 2
    h = 0
    if blocks:
        for block in struct.unpack_from(f"<{blocks}I", data):
            k = (block * _C1) & _MASK
            k = ((k << 15) | (k >> 17)) & _MASK
            k = (k * _C2) & _MASK
            h ^= k
            h = ((h << 13) | (h >> 19)) & _MASK
            h = (h * 5 + 0xE6546B64) & _MASK
    rest = n & 3
    if rest:
        k = int.from_bytes(data[blocks << 2 :], "little")
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
    h ^= n & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h
