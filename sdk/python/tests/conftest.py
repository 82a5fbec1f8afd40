"""Shared fixtures: the repository's language-neutral test data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def read_testdata(name: str) -> Any:
    """A file of the repository's testdata directory, decoded."""
    return json.loads((REPO / "testdata" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository's root."""
    return REPO
