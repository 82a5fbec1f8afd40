"""Shared fixtures: the repository's language-neutral test data."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vigilserve import VigilServe

REPO = Path(__file__).resolve().parents[3]


def read_testdata(name: str) -> Any:
    """A file of the repository's testdata directory, decoded."""
    return json.loads((REPO / "testdata" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository's root."""
    return REPO


@pytest.fixture(scope="session")
def vigil_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The vigil binary: the one make test built (VIGIL_TEST_BINARY), or one
    built for this run, as internal/testenv/vigiltest does for Go tests."""
    given = os.environ.get("VIGIL_TEST_BINARY", "")
    if given and os.path.exists(given):
        return given
    out = str(tmp_path_factory.mktemp("bin") / "vigil")
    subprocess.run(["go", "build", "-o", out, "./cmd/vigil"], cwd=REPO, check=True)
    return out


@pytest.fixture()
def vigil_serve(vigil_binary: str, tmp_path: Path) -> Iterator[VigilServe]:
    """A real vigil serve on a free loopback port, stopped after the test."""
    data = tmp_path / "data"
    data.mkdir()
    server = VigilServe(vigil_binary, str(data))
    yield server
    server.stop()
