"""Flags files read as Go's flag.Parse reads them, and bad ones refused with
errors that name the flag and the field."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vigil import Client, DocumentError, EvalContext, Snapshot, ValidationError, parse_flags

GOOD = """
flags:
  - key: banner
    variants: {off: false, on: true, yes: "yes"}
    control: off
    treatment: on
    enabled: true
    rules:
      - variant: on
        when: [{attribute: n, op: in, values: [1.50, 7, true]}]
    rollout: {percent: 0}
"""


def test_yaml_1_2_scalars() -> None:
    (f,) = parse_flags(GOOD)
    # off, on and yes are strings in YAML 1.2, as in Go's yaml.v3.
    assert set(f.variants) == {"off", "on", "yes"} and f.variants["yes"] == "yes"
    assert f.control == "off" and f.treatment == "on"
    # Clause values keep Go's spelling of what YAML read.
    assert f.rules[0].when[0].values == ("1.5", "7", "true")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", "document is empty"),
        ("flags: {}", "flags: want a list"),
        ("flag: []", 'unknown field "flag"'),
        ("flags: [{key: a, variants: {x: 1}, control: x, enabld: true}]", "flag a: enabld: unknown field"),
        ("flags: [{key: a, variants: {x: 1}, control: y}]", 'flag a: control: unknown variant "y"'),
        (
            "flags: [{key: a, variants: {x: 1}, control: x, enabled: yes}]",
            'flag a: enabled: want true or false, got "yes"',
        ),
        ("flags: [{key: a, variants: {x: 1}, control: x, rollout: {percent: 1.2345}}]", "has more than 3 decimals"),
        ("flags: [{key: a, variants: {x: 1}, control: x, salt: 0777}]", "reads differently in Go's YAML parser"),
        ("flags: [{key: a, variants: {x: 1}, control: x, salt: 2026-01-01}]", "reads differently in Go's YAML parser"),
        ("flags: [{key: a, key: b}]", "already defined"),
        ("flags: [{key: a, variants: {x: .inf}, control: x}]", "not a JSON number"),
        (
            "flags: [{key: a, variants: {x: 1}, control: x, rules: [{variant: x, when: [{attribute: s, op: matches, values: ['(?=a)']}]}]}]",
            "rules[0].when[0]: values[0]: bad regular expression",
        ),
        ("flags: [{key: a, variants: {x: 1}, control: x}, {key: a, variants: {x: 1}, control: x}]", "duplicate key"),
        ("flags: [{key: 'bad key', variants: {x: 1}, control: x}]", "must be 1 to 128 letters"),
        (
            "flags: [{key: a, variants: {x: 1}, control: x, rules: [{variant: x, when: [{attribute: n, op: gt, values: [abc]}]}]}]",
            '"abc" is not a number',
        ),
        (
            "flags: [{key: a, variants: {x: 1}, control: x, rules: [{variant: x, when: [{attribute: n, op: near, values: [1]}]}]}]",
            'unknown op "near"',
        ),
    ],
)
def test_bad_files_name_what_is_wrong(text: str, want: str) -> None:
    with pytest.raises((DocumentError, ValidationError)) as e:
        parse_flags(text)
    assert want in str(e.value)


def test_evaluation_never_raises_on_odd_attributes() -> None:
    (f,) = parse_flags(GOOD)
    snap = Snapshot.of(1, [f])
    odd: list[object] = [
        None,
        float("nan"),
        float("inf"),
        10**400,
        -(10**400),
        [1, {"a": None}],
        {"k": [True]},
        object(),
        b"\xff",
        "\ud800",
    ]
    for v in odd:
        d = snap.evaluate("banner", EvalContext("u\ud800", {"n": v}))
        assert d.reason in ("targeting_match", "split") and d.error_type is None, v


def test_file_mode_reload_swaps_valid_edits_only(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(GOOD)
    with Client.from_file(str(path), reload_interval=0.01) as client:
        assert client.ready and client.bool_value("banner", "u", True) is False
        gen = client.generation
        path.write_text(GOOD.replace("percent: 0", "percent: 100"))
        os.utime(path, ns=(1, 1))  # a new stamp even within the clock's resolution
        gen = client.wait_updated(gen, 10)
        assert client.bool_value("banner", "u", False) is True
        # An invalid edit is logged and the previous flags stay.
        path.write_text(GOOD.replace("control: off", "control: nope"))
        os.utime(path, ns=(2, 2))
        assert client.wait_updated(gen, 0.3) == gen
        assert client.bool_value("banner", "u", False) is True


def test_file_mode_refuses_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(GOOD.replace("control: off", "control: nope"))
    with pytest.raises(ValidationError, match=rf'flag banner: control: unknown variant "nope".*{re.escape(path.name)}'):
        Client.from_file(str(path))
    with pytest.raises(DocumentError, match=r"missing\.yaml"):
        Client.from_file(str(tmp_path / "missing.yaml"))
