"""The shared vectors: testdata/bucketing-v1.json and evaluation-v1.json, in full."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from vigil import Client, Detail, EvalContext, Snapshot, read_snapshot_document
from vigil.bucket import bucket, hash_unit
from vigil.flag import millipercent
from vigil.gocompat import json_loads

from conftest import REPO, read_testdata

BUCKETING = read_testdata("bucketing-v1.json")
EVALUATION = json_loads((REPO / "testdata" / "evaluation-v1.json").read_text(encoding="utf-8"))


def test_bucketing_vectors() -> None:
    assert len(BUCKETING["vectors"]) == 1200
    for v in BUCKETING["vectors"]:
        assert hash_unit(v["salt"], v["unit"]) == v["hash"], v
        assert bucket(v["salt"], v["unit"]) == v["bucket"], v


def test_bucketing_boundaries() -> None:
    assert BUCKETING["boundaries"]
    for b in BUCKETING["boundaries"]:
        got = bucket(b["salt"], b["unit"])
        assert got == b["bucket"], b
        assert (got < millipercent(b["percent"])) == b["treatment"], b


def _snapshot() -> Snapshot:
    doc = read_snapshot_document({"revision": 1, "flags": EVALUATION["flags"]})
    assert doc.errors == []
    return Snapshot.of(1, doc.flags)


def _untyped() -> list[dict[str, Any]]:
    return [c for c in EVALUATION["cases"] if "type" not in c]


def _typed() -> list[dict[str, Any]]:
    return [c for c in EVALUATION["cases"] if "type" in c]


def test_evaluation_vectors_cover_both_forms() -> None:
    assert len(_untyped()) > 50 and len(_typed()) > 20


@pytest.mark.parametrize("case", _untyped(), ids=lambda c: c["name"])
def test_evaluation_vector(case: dict[str, Any]) -> None:
    d = _snapshot().evaluate(case["flag"], EvalContext(case.get("targetingKey", ""), case.get("attributes") or {}))
    want = case["expected"]
    assert (d.variant, d.reason, d.error_type) == (want.get("variant", ""), want["reason"], want.get("errorType")), case
    if d.variant:
        assert d.value == want["value"] and type(d.value) is type(want["value"]), case


@pytest.fixture(scope="module")
def vector_client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    path = tmp_path_factory.mktemp("vectors") / "flags.json"
    path.write_text(json.dumps({"flags": EVALUATION["flags"]}), encoding="utf-8")
    return Client.from_file(str(path))


GETTERS: dict[str, Callable[[Client, str, EvalContext, Any], Detail]] = {
    "boolean": Client.bool_detail,
    "string": Client.string_detail,
    "number": Client.float_detail,
    "integer": Client.int_detail,
    "object": Client.json_detail,
}


@pytest.mark.parametrize("case", _typed(), ids=lambda c: c["name"])
def test_evaluation_vector_typed(case: dict[str, Any], vector_client: Client) -> None:
    get = GETTERS[case["type"]]
    ctx = EvalContext(case.get("targetingKey", ""), case.get("attributes") or {})
    d = get(vector_client, case["flag"], ctx, case.get("default"))
    want = case["expected"]
    assert (d.variant, d.reason, d.error_type) == (want.get("variant", ""), want["reason"], want.get("errorType")), case
    assert d.value == want.get("value"), case
