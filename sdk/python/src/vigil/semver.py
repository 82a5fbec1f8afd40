"""Semantic versions as the semver_lt and semver_gte operators read them.

The loose grammar of Go's reference (sdk/flag/semver.go, after Masterminds
semver v3): an optional "v", a major number, optional ".minor" and ".patch"
(missing parts are 0, leading zeros allowed), an optional "-prerelease" and
"+metadata" of dot-separated [0-9A-Za-z-] identifiers; a numeric prerelease
identifier has no leading zero; at most 256 bytes; numbers fit 64 bits.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_LOOSE = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?",
    re.ASCII,
)
_MAX_LEN = 256
_MAX_UINT64 = 2**64 - 1


class Version(NamedTuple):
    """A parsed semantic version; pre is "" when there is no prerelease."""

    major: int
    minor: int
    patch: int
    pre: str


def parse_version(s: str) -> Version | None:
    """Parses s, or returns None where the Go reference refuses it."""
    if len(s) > _MAX_LEN:
        return None
    m = _LOOSE.fullmatch(s)
    if m is None:
        return None
    nums = [int(g) if g else 0 for g in m.group(1, 2, 3)]
    if any(n > _MAX_UINT64 for n in nums):
        return None
    pre = m.group(4) or ""
    if pre and any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre.split(".")):
        return None
    return Version(nums[0], nums[1], nums[2], pre)


def compare(a: Version, b: Version) -> int:
    """Orders two versions: -1, 0 or 1. A prerelease comes before its release."""
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    if a.pre == b.pre:
        return 0
    if not a.pre:
        return 1
    if not b.pre:
        return -1
    pa, pb = a.pre.split("."), b.pre.split(".")
    for i in range(max(len(pa), len(pb))):
        d = _compare_part(pa[i] if i < len(pa) else "", pb[i] if i < len(pb) else "")
        if d:
            return d
    return 0


def _as_uint(s: str) -> int | None:
    if not s.isascii() or not s.isdigit():
        return None
    n = int(s)
    return n if n <= _MAX_UINT64 else None


def _compare_part(a: str, b: str) -> int:
    # A missing identifier first, numbers (that fit 64 bits) before words,
    # numbers by value and words by bytes (ASCII here).
    if a == b:
        return 0
    if not a:
        return -1
    if not b:
        return 1
    na, nb = _as_uint(a), _as_uint(b)
    if na is not None and nb is not None:
        return -1 if na < nb else 1
    if na is not None:
        return -1
    if nb is not None:
        return 1
    return 1 if a > b else -1
