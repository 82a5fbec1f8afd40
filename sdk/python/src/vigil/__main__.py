"""`python -m vigil eval`: the Go binary's `vigil eval`, in Python.

    python -m vigil eval -f FLAGS_FILE KEY UNIT [attr=value ...]
    python -m vigil eval -f FLAGS_FILE --units - KEY [attr=value ...]

evaluates a flag from a flags file exactly as the SDK does and prints the
detail as one line of JSON with the same fields, in the same order and
spelling, as `vigil eval`, so that the two can be compared line by line.
Exit codes are vigil's: 1 for a failure, 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO, Any, NoReturn

from vigil import gocompat
from vigil.bucket import bucket
from vigil.documents import load_flags_file
from vigil.flag import EvalContext, Snapshot

EXIT_ERROR = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def explain(snap: Snapshot, key: str, ctx: EvalContext) -> str:
    """One line of `vigil eval` output: the detail, the unit, and for a
    flag with a rollout the unit's bucket and the percentage."""
    d = snap.evaluate(key, ctx)
    out: list[tuple[str, Any]] = [("unit", ctx.key), ("key", d.key), ("value", d.value)]
    if d.variant:
        out.append(("variant", d.variant))
    out.append(("reason", d.reason))
    if d.error_type:
        out.append(("errorType", d.error_type))
    if d.version:
        out.append(("version", d.version))
    if d.tracked:
        out.append(("tracked", True))
    f = snap.flag(key)
    # An empty unit never reaches bucketing (docs/bucketing.md), so a bucket
    # beside it would explain a decision that was not made.
    if f is not None and f.rollout is not None and ctx.key:
        out.append(("bucket", bucket(f.salt or f.key, ctx.key)))
        out.append(("percent", f.rollout.percent))
    return "{" + ",".join(f'"{k}":{gocompat.json_dumps(v)}' for k, v in out) + "}"


def parse_attrs(args: Sequence[str]) -> dict[str, Any]:
    """attr=value arguments; values stay strings, as in `vigil eval`."""
    attrs: dict[str, Any] = {}
    for i, a in enumerate(args):
        k, sep, v = a.partition("=")
        if not sep or not k:
            raise _UsageError(f"eval: attribute {i + 1} {gocompat.json_dumps(a)}: want attr=value")
        attrs[k] = v
    return attrs


def run_eval(argv: Sequence[str], stdin: IO[bytes], stdout: IO[str]) -> None:
    """Runs `eval` with argv (after the word eval)."""
    p = _Parser(
        prog="python -m vigil eval", description="Evaluate a flag for a unit from a flags file and explain the result."
    )
    p.add_argument("-f", "--file", default="", help="flags file (YAML or JSON)")
    p.add_argument("--units", default="", help="read units from standard input (-), one a line")
    p.add_argument("args", nargs="*", metavar="KEY [UNIT] [attr=value ...]")
    ns = p.parse_intermixed_args(argv)
    if not ns.file:
        raise _UsageError("eval: -f FLAGS_FILE is required")
    if ns.units not in ("", "-"):
        raise _UsageError(f"eval: --units takes only - (standard input), got {gocompat.json_dumps(ns.units)}")
    need = 1 if ns.units == "-" else 2
    if len(ns.args) < need:
        raise _UsageError(f"eval: want KEY{' UNIT' if need == 2 else ''}, got {len(ns.args)} arguments")
    attrs = parse_attrs(ns.args[need:])
    snap = Snapshot.of(0, load_flags_file(ns.file))
    key = ns.args[0]
    # A flag the file lacks would evaluate to the default with
    # flag_not_found; here it is most likely a typo, and a script must not
    # read it as an answer.
    if snap.flag(key) is None:
        raise ValueError(f"eval: flag {gocompat.json_dumps(key)} is not in {ns.file}")
    if ns.units == "":
        stdout.write(explain(snap, key, EvalContext(ns.args[1], attrs)) + "\n")
        return
    data = stdin.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for raw in lines:
        unit = raw.rstrip(b"\r").decode("utf-8", "replace")
        stdout.write(explain(snap, key, EvalContext(unit, attrs)) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args or args[0] != "eval":
            raise _UsageError("want a command: eval")
        run_eval(args[1:], sys.stdin.buffer, sys.stdout)
    except _UsageError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
