"""The `matches` operator's RE2 syntax, run on Python's `re`.

Go's regexp (RE2) and Python's re read the same text differently in places
("$" also matches before a final newline, "\\w", "\\s", "\\d" and "\\b" are
Unicode-aware, "[]a]" and "\\pL" do not parse, "a{,2}" is a repetition) and
re accepts what RE2 refuses (look-arounds, back-references). So a pattern is
translated construct by construct into an re pattern that accepts exactly
the same strings. What RE2 refuses raises InvalidPatternError; a valid
pattern outside the supported subset raises UnsupportedPatternError rather
than running with another meaning, and evaluation answers such a rule with
error type "general", as the TypeScript SDK does.

Supported: literals and escapes (\\a \\f \\t \\n \\r \\v, \\x7F, \\x{10FFFF},
octal, escaped punctuation, \\Q...\\E), ".", "^", "$", \\A, \\z, \\b, \\B, the
Perl classes and their negations, Unicode categories and scripts (\\pN,
\\p{Greek}, \\PL, \\p{^L}, from Go's own tables in _unicode.py, so that
they follow Go's Unicode version), bracket classes with ranges, negation and
[:posix:] classes, groups, alternation, repetitions (lazy or not), and the
flags m, s and U anywhere and i at the start of the pattern. Under (?i),
\\b, \\B, \\W and classes that hold "i" or "I" are refused: Python folds
"i" with the dotless and dotted I of Turkish, RE2 does not (a literal "i"
is translated to match only "i" and "I").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from vigil import _unicode

_MAX_CP = 0x10FFFF
Range = tuple[int, int]

_PERL: dict[str, list[Range]] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}

_POSIX: dict[str, list[Range]] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}

_WORD = "[0-9A-Za-z_]"
_WORD_BOUNDARY = f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))"
_NOT_WORD_BOUNDARY = f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))"
# Code points Python's re folds with "i" under IGNORECASE and RE2 does not.
_TURKISH_I = ((0x49, 0x49), (0x69, 0x69), (0x130, 0x131))
_REPEAT = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_NAMED_GROUP = re.compile(r"\(\?P?<[A-Za-z0-9_]+>")
_POSIX_CLASS = re.compile(r"\[:(\^?)([a-z]+):\]")


class UnsupportedPatternError(ValueError):
    """A valid RE2 pattern that this SDK cannot run with the same meaning."""


class InvalidPatternError(ValueError):
    """A pattern that is not valid RE2: Go's regexp refuses it too."""


@functools.lru_cache(maxsize=256)
def _unicode_class(name: str) -> list[Range] | None:
    """The ranges of a category or script name, from Go's own tables."""
    text = _unicode.CATEGORIES.get(name) or _unicode.SCRIPTS.get(name)
    if text is None:
        return None
    out: list[Range] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return out


def _negate(rs: list[Range]) -> list[Range]:
    out: list[Range] = []
    nxt = 0
    for lo, hi in sorted(rs):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return out


def _cp(c: int) -> str:
    return f"\\U{c:08x}"


def _ranges_source(rs: list[Range]) -> str:
    return "".join(_cp(lo) if lo == hi else _cp(lo) + "-" + _cp(hi) for lo, hi in rs)


def _overlaps(rs: list[Range], others: tuple[Range, ...]) -> bool:
    return any(lo <= ohi and olo <= hi for lo, hi in rs for olo, ohi in others)


@dataclass
class _Flags:
    m: bool = False
    s: bool = False


@functools.lru_cache(maxsize=1024)
def compile_re2(pattern: str) -> re.Pattern[str]:
    """Compiles an RE2 pattern to an equivalent re.Pattern (use .search:
    RE2's matches are unanchored), or raises InvalidPatternError or
    UnsupportedPatternError."""
    source, caseless = _Translator(pattern).run()
    try:
        return re.compile(source, re.IGNORECASE if caseless else 0)
    except (re.error, RecursionError, OverflowError) as e:
        raise UnsupportedPatternError(str(e)) from e


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []
        self.flags = _Flags()
        self.stack: list[_Flags] = []
        self.caseless = False

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.p[j] if j < len(self.p) else ""

    def fail(self, msg: str) -> UnsupportedPatternError:
        return UnsupportedPatternError(f"{msg} at offset {self.i}")

    def invalid(self, msg: str) -> InvalidPatternError:
        return InvalidPatternError(f"{msg} at offset {self.i}")

    def run(self) -> tuple[str, bool]:
        lead = self.peek_flag_group()
        if lead is not None and lead[2] == ")":
            on, off, _, length = lead
            self.i += length
            if "i" in on and "i" not in off:
                self.caseless = True
            self.apply_flags(on, off)
        while self.i < len(self.p):
            self.atom()
        if self.stack:
            raise self.invalid("missing closing )")
        return "".join(self.out), self.caseless

    def peek_flag_group(self) -> tuple[str, str, str, int] | None:
        """Reads "(?flags)" or "(?flags:" at the cursor."""
        if self.peek() != "(" or self.peek(1) != "?":
            return None
        k, on, off, neg = 2, "", "", False
        while True:
            c = self.peek(k)
            if c == "":
                return None
            if c in "):":
                if not on and not off and c == ")":
                    return None
                return on, off, c, k + 1
            if c == "-":
                if neg:
                    return None
                neg = True
            elif c in "imsU":
                if neg:
                    off += c
                else:
                    on += c
            else:
                return None
            k += 1

    def apply_flags(self, on: str, off: str) -> None:
        if "i" in on and not self.caseless:
            raise self.fail("case-insensitive flag (?i) is supported only at the start of the pattern")
        if "i" in off and self.caseless:
            raise self.fail("turning (?i) off inside the pattern is not supported")
        self.flags = _Flags(
            m=True if "m" in on else False if "m" in off else self.flags.m,
            s=True if "s" in on else False if "s" in off else self.flags.s,
        )
        # U (ungreedy) swaps which repetitions are lazy; whether a string
        # matches at all does not depend on it.

    def atom(self) -> None:
        c = self.p[self.i]
        if c == "(":
            self.group()
            return
        if c == ")":
            if not self.stack:
                raise self.invalid("unexpected )")
            self.flags = self.stack.pop()
            self.out.append(")")
            self.i += 1
        elif c == "|":
            self.out.append("|")
            self.i += 1
            return
        elif c == ".":
            self.out.append("[\\s\\S]" if self.flags.s else "[^\\n]")
            self.i += 1
        elif c == "^":
            self.out.append("(?:\\A|(?<=\\n))" if self.flags.m else "(?:\\A)")
            self.i += 1
        elif c == "$":
            self.out.append("(?:\\Z|(?=\\n))" if self.flags.m else "(?:\\Z)")
            self.i += 1
        elif c == "[":
            self.out.append(self.char_class())
        elif c == "\\":
            self.out.append(self.escape())
        elif c in "*+?":
            raise self.invalid(f"missing argument to repetition operator {c}")
        elif c == "{":
            if self.repeat_length() > 0:
                raise self.invalid("missing argument to repetition operator {")
            self.out.append("\\{")
            self.i += 1
        else:
            self.out.append(self.literal(ord(c)))
            self.i += 1
        self.quantifier()

    def group(self) -> None:
        fg = self.peek_flag_group()
        if fg is not None:
            on, off, close, length = fg
            self.i += length
            if close == ")":
                # (?flags) changes the flags to the end of the enclosing group.
                self.apply_flags(on, off)
                return
            self.stack.append(self.flags)
            self.apply_flags(on, off)
            self.out.append("(?:")
            return
        if self.peek(1) == "?":
            rest = self.p[self.i + 2 : self.i + 4]
            m = _NAMED_GROUP.match(self.p, self.i)
            if rest.startswith(":"):
                self.i += 3
            elif m is not None:
                self.i = m.end()
            elif rest[:1] in ("=", "!") or rest in ("<=", "<!"):
                raise self.invalid("look-around assertions are not RE2")
            else:
                raise self.invalid("invalid or unsupported group")
        else:
            self.i += 1
        self.stack.append(self.flags)
        self.out.append("(?:")

    def repeat_length(self) -> int:
        """The length of a {n}, {n,} or {n,m} repetition at the cursor, or 0
        when the brace is a literal (as RE2 reads a "{" that starts none)."""
        m = _REPEAT.match(self.p, self.i)
        if m is None:
            return 0
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else -1 if m.group(3) == "" else int(m.group(3))
        if lo > 1000 or hi > 1000 or (hi >= 0 and hi < lo):
            raise self.invalid("invalid repeat count")
        return m.end() - m.start()

    def quantifier(self) -> None:
        c = self.peek()
        if c in ("*", "+", "?"):
            q = c
            self.i += 1
        elif c == "{":
            n = self.repeat_length()
            if n == 0:
                return
            q = self.p[self.i : self.i + n]
            self.i += n
        else:
            return
        if self.peek() == "?":
            q += "?"
            self.i += 1
        nxt = self.peek()
        if nxt in ("*", "+", "?") or (nxt == "{" and self.repeat_length() > 0):
            raise self.invalid("invalid nested repetition operator")
        self.out.append(q)

    def escape(self) -> str:
        c = self.peek(1)
        if c == "":
            raise self.invalid("trailing backslash")
        if c == "A":
            self.i += 2
            return "(?:\\A)"
        if c == "z":
            self.i += 2
            return "(?:\\Z)"
        if c in ("b", "B"):
            if self.caseless:
                raise self.fail(f"\\{c} with (?i): Python folds the word characters it tests, RE2 does not")
            self.i += 2
            return _WORD_BOUNDARY if c == "b" else _NOT_WORD_BOUNDARY
        if c == "Q":
            self.i += 2
            parts: list[str] = []
            while self.i < len(self.p):
                if self.peek() == "\\" and self.peek(1) == "E":
                    self.i += 2
                    break
                parts.append(self.literal(ord(self.p[self.i])))
                self.i += 1
            # One atom per character: a repetition after the run applies to
            # the last, as in RE2.
            return "".join(parts)
        cls = self.class_escape()
        if cls is not None:
            return "[" + _ranges_source(cls) + "]"
        return self.literal(self.char_escape())

    def class_escape(self) -> list[Range] | None:
        """The ranges of \\d \\s \\w \\D \\S \\W \\p \\P at the cursor, or None."""
        c = self.peek(1)
        lower = c.lower()
        if lower in _PERL:
            if c == "W" and self.caseless:
                raise self.fail("\\W with (?i): Python and RE2 fold it differently")
            self.i += 2
            rs = _PERL[lower] if c == lower else _negate(_PERL[lower])
            return self.folding_checked(rs)
        if c in ("p", "P"):
            self.i += 2
            if self.peek() == "{":
                close = self.p.find("}", self.i)
                if close < 0:
                    raise self.invalid("missing } in \\p{")
                name = self.p[self.i + 1 : close]
                self.i = close + 1
            else:
                name = self.peek()
                if name == "":
                    raise self.invalid("missing class name after \\p")
                self.i += 1
            negated = c == "P"
            if name.startswith("^"):
                name, negated = name[1:], not negated
            found = [(0, _MAX_CP)] if name == "Any" else _unicode_class(name)
            if found is None:
                raise self.invalid(f"unknown Unicode class \\p{{{name}}}")
            rs = found
            return self.folding_checked(_negate(rs) if negated else rs)
        return None

    def folding_checked(self, rs: list[Range]) -> list[Range]:
        if self.caseless and _overlaps(rs, _TURKISH_I):
            raise self.fail("a class with i or I under (?i): Python folds it with the Turkish I, RE2 does not")
        return rs

    def char_escape(self) -> int:
        """Reads an escape that stands for one character."""
        c = self.peek(1)
        self.i += 2
        simple = {"a": 0x07, "f": 0x0C, "t": 0x09, "n": 0x0A, "r": 0x0D, "v": 0x0B}
        if c in simple:
            return simple[c]
        if c == "x":
            if self.peek() == "{":
                close = self.p.find("}", self.i)
                digits = "" if close < 0 else self.p[self.i + 1 : close]
                if not re.fullmatch("[0-9A-Fa-f]+", digits) or int(digits, 16) > _MAX_CP:
                    raise self.invalid("invalid escape \\x{")
                self.i = close + 1
                return int(digits, 16)
            digits = self.peek() + self.peek(1)
            if not re.fullmatch("[0-9A-Fa-f]{2}", digits):
                raise self.invalid("invalid escape \\x")
            self.i += 2
            return int(digits, 16)
        if "0" <= c <= "7":
            # \0, and \1-\7 followed by an octal digit, start an octal code
            # of up to three digits; a lone \1-\7 would be a back-reference.
            if c != "0" and not ("0" <= self.peek() <= "7" and self.peek() != ""):
                raise self.invalid("back-references are not RE2")
            digits = c
            while len(digits) < 3 and self.peek() != "" and "0" <= self.peek() <= "7":
                digits += self.peek()
                self.i += 1
            return int(digits, 8)
        if c.isascii() and not c.isalnum():
            return ord(c)  # escaped punctuation
        self.i -= 2
        raise self.invalid(f"invalid escape \\{c}")

    def char_class(self) -> str:
        self.i += 1  # [
        negated = False
        if self.peek() == "^":
            negated = True
            self.i += 1
        ranges: list[Range] = []
        first = True
        while True:
            c = self.peek()
            if c == "":
                raise self.invalid("missing closing ]")
            if c == "]" and not first:
                break
            first = False
            if c == "[" and self.peek(1) == ":":
                m = _POSIX_CLASS.match(self.p, self.i)
                if m is not None and m.group(2) in _POSIX:
                    self.i = m.end()
                    rs = _POSIX[m.group(2)]
                    ranges.extend(_negate(rs) if m.group(1) else rs)
                    continue
            if c == "\\" and self.peek(1) in tuple("dswDSWpP"):
                cls = self.class_escape()
                assert cls is not None
                ranges.extend(cls)
                continue
            lo = self.class_char()
            hi = lo
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                hi = self.class_char()
                if hi < lo:
                    raise self.invalid("bad character class range")
            ranges.append((lo, hi))
        self.i += 1  # ]
        self.folding_checked(ranges)
        if not ranges:
            return "[\\s\\S]" if negated else "[^\\s\\S]"
        return ("[^" if negated else "[") + _ranges_source(ranges) + "]"

    def class_char(self) -> int:
        c = self.peek()
        if c == "\\":
            n = self.peek(1)
            if n == "":
                raise self.invalid("trailing backslash")
            if n in "AzbBQEdswDSWpP":
                raise self.invalid(f"invalid escape \\{n} in a character class")
            return self.char_escape()
        self.i += 1
        return ord(c)

    def literal(self, c: int) -> str:
        """One code point, so that it means itself anywhere in a pattern."""
        if self.caseless and _overlaps([(c, c)], _TURKISH_I):
            # Python's (?i) would fold i with the Turkish I; RE2's folds
            # i with I only, and the Turkish letters with nothing.
            return "(?-i:[iI])" if c in (0x49, 0x69) else f"(?-i:{_cp(c)})"
        return _cp(c)
