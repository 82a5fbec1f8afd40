"""Evaluation benchmarks of the Python SDK: a rollout flag, and a flag with
20 rules that none match before the rollout. Run from sdk/python:

    .venv/bin/python bench/bench_eval.py

Prints nanoseconds per evaluation (the best of 5 runs of timeit), for
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import tempfile
import timeit

from vigil import Client, EvalContext, Snapshot
from vigil.flag import Clause, Flag, Rollout, Rule, flag_to_dict


def flags() -> list[Flag]:
    onoff = {"off": False, "on": True}
    rules = tuple(
        Rule("on", (Clause("plan", "in", (f"plan-{i}",)), Clause("country", "in", ("FR", "DE")))) for i in range(20)
    )
    return [
        Flag("rollout", onoff, "off", True, "on", rollout=Rollout(25), tracked=True),
        Flag("rules-20", onoff, "off", True, "on", rules=rules, rollout=Rollout(25)),
    ]


def main() -> None:
    snap = Snapshot.of(1, flags())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flags.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"flags": [flag_to_dict(f) for f in flags()]}, fh)
        client = Client.from_file(path)
    ctx = EvalContext("user-12345", {"plan": "free", "country": "US"})
    cases = {
        "Snapshot.evaluate, rollout flag": lambda: snap.evaluate("rollout", ctx),
        "Snapshot.evaluate, 20 rules then rollout": lambda: snap.evaluate("rules-20", ctx),
        "Client.bool_value, rollout flag": lambda: client.bool_value("rollout", ctx, False),
        "Client.bool_value, 20 rules then rollout": lambda: client.bool_value("rules-20", ctx, False),
    }
    n = 50_000
    for name, fn in cases.items():
        best = min(timeit.repeat(fn, number=n, repeat=5))
        print(f"{name}: {best / n * 1e9:.0f} ns/op")


if __name__ == "__main__":
    main()
