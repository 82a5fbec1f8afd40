"""The Unicode tables RE2's \\p{...} reads are Go's, and current."""

from __future__ import annotations

import subprocess

import pytest

from vigil.re2 import InvalidPatternError, compile_re2

from conftest import REPO

SDK = REPO / "sdk" / "python"


def test_generated_tables_are_current() -> None:
    want = subprocess.run(
        ["go", "run", "./tools/unicodegen"], cwd=SDK, check=True, capture_output=True, text=True
    ).stdout
    got = (SDK / "src" / "vigil" / "_unicode.py").read_text(encoding="utf-8")
    assert got == want, "run `go run ./tools/unicodegen -o src/vigil/_unicode.py` in sdk/python"


def test_scripts_and_categories() -> None:
    greek = compile_re2(r"^\p{Greek}+$")
    assert greek.search("αβγ") and not greek.search("abc")
    letters = compile_re2(r"^\pL+\PL$")
    assert letters.search("ünï1") and not letters.search("ünï")
    assert compile_re2(r"\p{^N}").search("a") and not compile_re2(r"^\p{^N}$").search("٣")


def test_unknown_class_is_invalid() -> None:
    with pytest.raises(InvalidPatternError, match="Klingon"):
        compile_re2(r"\p{Klingon}")
