"""python -m vigil eval against the Go binary's vigil eval, line by line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

FLAGS = """
flags:
  - key: new-checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets:
      - {variant: on, units: [qa-1, "ünïcødé-🙂"]}
    rules:
      - variant: on
        when: [{attribute: plan, op: in, values: [beta, 10, true]}]
      - variant: off
        when: [{attribute: age, op: lt, values: [18]}, {attribute: country, op: matches, values: ["^(FR|DE)$"]}]
    rollout:
      percent: 12.345
  - key: limits
    variants:
      small: {max: 10, ratio: 0.000001, tags: ["<a>", "&"]}
      large: {max: 1e20, ratio: 2.5, nested: {z: null, a: [1, 2.5, -0]}}
    control: small
    treatment: large
    enabled: true
    salt: limits/v2
    rollout: {percent: 66.667}
  - key: banner
    description: a flag without a rollout
    variants: {a: "A", b: "B"}
    control: a
    enabled: true
    rules:
      - variant: b
        when: [{attribute: version, op: semver_gte, values: ["2.0.0-rc.1"]}]
  - key: off-switch
    variants: {x: 1, y: 2}
    control: x
    treatment: y
    enabled: false
    rollout: {percent: 100}
"""

UNITS = ["", "user-1", "qa-1", "ünïcødé-🙂", "a b", "\u00e9", "e\u0301", "x" * 300, "<script>", "tab\tunit"] + [
    f"user-{i}" for i in range(1000)
]


def run_python(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", "eval", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO / "sdk" / "python" / "src",
        check=False,
    )


def run_go(binary: str, args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "eval", *args], input=stdin, capture_output=True, text=True, encoding="utf-8", check=False
    )


@pytest.fixture()
def flags_file(tmp_path: Path) -> str:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("key", ["new-checkout", "limits", "banner", "off-switch"])
def test_units_from_stdin_match_go(vigil_binary: str, flags_file: str, key: str) -> None:
    stdin = "\n".join(UNITS) + "\r\n"
    for attrs in ([], ["plan=free", "age=17", "country=FR"], ["plan=10", "version=v2"], ["version=2.0.0-rc.0"]):
        args = ["-f", flags_file, "--units", "-", key, *attrs]
        py, go = run_python(args, stdin), run_go(vigil_binary, args, stdin)
        assert go.returncode == 0, go.stderr
        assert py.returncode == 0, py.stderr
        go_lines, py_lines = go.stdout.splitlines(), py.stdout.splitlines()
        assert len(go_lines) == len(UNITS)
        for unit, g, p in zip(UNITS, go_lines, py_lines, strict=False):
            assert p == g, f"unit {unit!r} with {attrs}"
        assert len(py_lines) == len(go_lines)


def test_one_unit_matches_go(vigil_binary: str, flags_file: str) -> None:
    for args in (
        ["new-checkout", "user-1"],
        ["new-checkout", "user-1", "plan=beta"],
        ["new-checkout", "", "plan=free"],
        ["limits", "u", "k=v=w"],
    ):
        py, go = run_python(["-f", flags_file, *args]), run_go(vigil_binary, ["-f", flags_file, *args])
        assert (py.returncode, py.stdout) == (go.returncode, go.stdout), args
    assert run_python(["-f", flags_file, "new-checkout", "user-1"]).stdout == (
        '{"unit":"user-1","key":"new-checkout","value":false,"variant":"off","reason":"split","bucket":39756,"percent":12.345}\n'
    )


def test_errors_exit_as_go(vigil_binary: str, flags_file: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLAGS.replace("control: off", "control: nope", 1), encoding="utf-8")
    cases = [
        (["new-checkout", "u"], "-f FLAGS_FILE is required"),
        (["-f", flags_file, "new-checkout"], "want KEY UNIT"),
        (["-f", flags_file, "new-checkout", "u", "plan"], 'attribute 1 "plan": want attr=value'),
        (["-f", flags_file, "--units", "users.txt", "new-checkout"], "--units takes only -"),
        (["-f", str(bad), "new-checkout", "u"], 'control: unknown variant "nope"'),
        (["-f", str(tmp_path / "none.yaml"), "k", "u"], "none.yaml"),
        (["-f", flags_file, "missing", "user-1"], f'flag "missing" is not in {flags_file}'),
    ]
    for args, want in cases:
        py, go = run_python(args), run_go(vigil_binary, args)
        assert py.returncode == go.returncode != 0, (args, py.stderr, go.stderr)
        assert py.stdout == "" and want in py.stderr and want in go.stderr, (args, py.stderr, go.stderr)
