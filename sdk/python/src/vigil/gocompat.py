"""Conversions that give exactly the answers of the Go reference.

Evaluation (sdk/flag/eval.go) renders and parses attributes with Go's
strconv and fmt, and `vigil eval` prints JSON with Go's encoding/json. Where
Python's built-ins differ (str(1e21) is "1e+21", float() takes " 1 ",
"١٢" and "1_0" alike, json.dumps(1e20) is "1e+20"), these follow Go.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

# unicode.IsSpace: the Latin-1 spaces and the Unicode White_Space property.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def trim_space(s: str) -> str:
    """strings.TrimSpace."""
    return s.strip(_GO_SPACE)


_DECIMAL = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?", re.ASCII)
_HEX = re.compile(r"([+-]?)0[xX]([0-9a-fA-F_]*)(?:\.([0-9a-fA-F_]*))?[pP]([+-]?[0-9_]+)", re.ASCII)
_SPECIAL = {
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
    "nan": math.nan,
}


def parse_float(s: str) -> float | None:
    """strconv.ParseFloat(s, 64): the number, or None where Go returns an
    error (bad syntax, or a finite literal out of range)."""
    if not s:
        return None
    special = _SPECIAL.get(s.lower()) if len(s) <= 9 else None
    if special is not None:
        return special
    if "_" in s and not _underscore_ok(s):
        return None
    if _DECIMAL.fullmatch(s):
        clean = s.replace("_", "")
        mantissa = re.split("[eE]", clean)[0]
        if not any(c.isdigit() for c in mantissa):
            return None
        n = float(clean)
        return n if math.isfinite(n) else None
    m = _HEX.fullmatch(s)
    if m is None:
        return None
    sign, whole, frac, exp = m.group(1), m.group(2).replace("_", ""), (m.group(3) or "").replace("_", ""), m.group(4)
    if not whole and not frac:
        return None
    try:
        n = float.fromhex(f"{sign}0x{whole or '0'}.{frac}p{exp.replace('_', '')}")
    except OverflowError:
        return None
    return n if math.isfinite(n) else None


def _underscore_ok(s: str) -> bool:
    # Go's rule for digit separators: each "_" between two digits, or
    # between a base prefix and a digit.
    saw = "^"  # ^ start, 0 digit or prefix, _ underscore, ! other
    if s[:1] in ("+", "-"):
        s = s[1:]
    i, hexa = 0, False
    if len(s) >= 2 and s[0] == "0" and s[1] in "xXbBoO":
        i, saw, hexa = 2, "0", s[1] in "xX"
    for c in s[i:]:
        if "0" <= c <= "9" or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def _decompose(x: float) -> tuple[bool, str, int]:
    """Splits Python's shortest rendering of a finite non-zero x into sign,
    significant digits and the decimal point's place (x = 0.digits × 10^point)."""
    s = repr(x)
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    exp = 0
    if "e" in s:
        s, e = s.split("e")
        exp = int(e)
    whole, _, frac = s.partition(".")
    digits = whole + frac
    point = len(whole) + exp
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return neg, stripped.rstrip("0"), point


def format_float_f(x: float) -> str:
    """strconv.FormatFloat(x, 'f', -1, 64): the shortest decimal that reads
    back as x, never in exponent notation."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    neg, digits, point = _decompose(x)
    if point <= 0:
        out = "0." + "0" * -point + digits
    elif point >= len(digits):
        out = digits + "0" * (point - len(digits))
    else:
        out = digits[:point] + "." + digits[point:]
    return "-" + out if neg else out


def _format_e(x: float, min_exp_digits: int) -> str:
    neg, digits, point = _decompose(x)
    exp = point - 1
    mant = digits[0] + "." + digits[1:] if len(digits) > 1 else digits
    sign = "-" if exp < 0 else "+"
    out = f"{mant}e{sign}{abs(exp):0{min_exp_digits}d}"
    return "-" + out if neg else out


def format_float_g(x: float) -> str:
    """fmt's %v of a float64: exponent notation when the decimal exponent
    is below -4 or at least 6 (1e6 prints as "1e+06")."""
    if not math.isfinite(x) or x == 0:
        return format_float_f(x)
    _, _, point = _decompose(x)
    exp = point - 1
    return _format_e(x, 2) if exp < -4 or exp >= 6 else format_float_f(x)


def json_float(x: float) -> str:
    """encoding/json's rendering of a float64: 'f' between 1e-6 and 1e21,
    else exponent notation without a leading zero in the exponent."""
    a = abs(x)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return _format_e(x, 1)
    return format_float_f(x)


def sprint(v: Any) -> str:
    """fmt.Sprint of a value decoded from JSON, for attributes that are lists
    or objects."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return format_float_g(float(v))
    if isinstance(v, Mapping):
        m = cast("Mapping[str, Any]", v)
        return "map[" + " ".join(f"{k}:{sprint(m[k])}" for k in sorted(m, key=str)) + "]"
    if isinstance(v, Sequence):
        return "[" + " ".join(sprint(e) for e in cast("Sequence[Any]", v)) + "]"
    return str(v)


_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    # Go escapes HTML characters and the JavaScript line separators, and
    # writes a lone surrogate (which it cannot hold) as U+FFFD.
    for k, e in _ESCAPES.items():
        if k in out:
            out = out.replace(k, e)
    if any(0xD800 <= ord(c) < 0xE000 for c in out):
        out = "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in out)
    return out


def json_dumps(v: Any) -> str:
    """json.Marshal of a value decoded from JSON: numbers as Go's float64,
    object keys sorted, HTML characters escaped."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, int):
        return json_float(float(v)) if abs(v) > 2**53 else str(v)
    if isinstance(v, float):
        return json_float(v)
    if isinstance(v, Mapping):
        m = cast("Mapping[str, Any]", v)
        return "{" + ",".join(_json_string(str(k)) + ":" + json_dumps(m[k]) for k in sorted(m, key=str)) + "}"
    if isinstance(v, Sequence):
        return "[" + ",".join(json_dumps(e) for e in cast("Sequence[Any]", v)) + "]"
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def json_int(text: str) -> int | float:
    """An integer literal as Go decodes a JSON number into any (a float64):
    integers a float64 holds exactly stay int, the rest are rounded to a
    float as Go rounds them, and -0 stays -0."""
    n = int(text)
    if n == 0 and text.startswith("-"):
        return -0.0
    return n if -(2**53) <= n <= 2**53 else float(n)


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def json_loads(text: str | bytes) -> Any:
    """json.loads reading numbers as Go's encoding/json does into any:
    values a float64 cannot hold exactly are rounded to one, and NaN and
    Infinity are refused."""
    return json.loads(text, parse_int=json_int, parse_constant=_json_constant, parse_float=_json_float_checked)


def _json_float_checked(text: str) -> float:
    n = float(text)
    if not math.isfinite(n):
        raise ValueError(f"number {text} is out of range")
    return n
