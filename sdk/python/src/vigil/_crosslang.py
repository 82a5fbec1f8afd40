"""The Python side of the cross-language tests (internal/e2e/crosslang in
the Go module), which run Go over the same input and compare every answer.

    python -m vigil._crosslang evaluate input.json > output.json
    python -m vigil._crosslang regex input.json > output.json

evaluate: input {"flags": [...], "units": [...], "contexts": [{"key", "attributes"}]};
output {"outcomes": ["variant|reason|errorType", ...], "units": {"<flag>": "<one
char per unit>"}, "contexts": {...}}, where char c stands for
outcomes[ord(c) - 0x100], as sdk/js/tools/evaluate.ts writes it; and
"unitBuckets", each unit's unit bucket (0 to 7) as one digit.

regex: input {"patterns": [...], "inputs": [...]}; output {"results": [...]}:
per pattern one 0 or 1 per input, or "U: why" when the pattern is outside
the subset this SDK runs, as sdk/js/tools/regex.ts writes it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from vigil.bucket import unit_bucket
from vigil.documents import read_snapshot_document
from vigil.flag import Detail, EvalContext, Snapshot, as_list, as_object
from vigil.gocompat import json_loads
from vigil.re2 import UnsupportedPatternError, compile_re2


def evaluate(doc: Any) -> dict[str, Any]:
    """Every flag of doc for every unit and context, coded compactly."""
    obj = as_object(doc) or {}
    parsed = read_snapshot_document({"revision": 1, "flags": obj.get("flags") or []})
    if parsed.errors:
        raise SystemExit("\n".join(str(e) for e in parsed.errors))
    snap = Snapshot.of(1, parsed.flags)
    outcomes: list[str] = []
    index: dict[str, str] = {}

    def code(d: Detail) -> str:
        k = f"{d.variant}|{d.reason}|{d.error_type or ''}"
        c = index.get(k)
        if c is None:
            c = chr(0x100 + len(outcomes))
            outcomes.append(k)
            index[k] = c
        return c

    units = [str(u) for u in as_list(obj.get("units")) or []]
    contexts: list[EvalContext] = []
    for raw in as_list(obj.get("contexts")) or []:
        ctx = as_object(raw) or {}
        contexts.append(EvalContext(str(ctx.get("key") or ""), as_object(ctx.get("attributes")) or {}))
    out_units: dict[str, str] = {}
    out_contexts: dict[str, str] = {}
    for f in parsed.flags:
        compiled = snap.lookup(f.key)
        assert compiled is not None
        out_units[f.key] = "".join(code(compiled.evaluate(u, None)) for u in units)
        out_contexts[f.key] = "".join(code(compiled.evaluate(c.key, c.attributes)) for c in contexts)
    # Each unit's unit bucket (flag.UnitBucket), one digit per unit.
    unit_buckets = "".join(str(unit_bucket(u)) for u in units)
    return {"outcomes": outcomes, "units": out_units, "contexts": out_contexts, "unitBuckets": unit_buckets}


def regex(doc: Any) -> dict[str, Any]:
    """Every pattern of doc over every input."""
    obj = as_object(doc) or {}
    inputs = [str(s) for s in as_list(obj.get("inputs")) or []]
    results: list[str] = []
    for p in as_list(obj.get("patterns")) or []:
        try:
            r = compile_re2(str(p))
        except UnsupportedPatternError as e:
            results.append(f"U: {e}")
            continue
        results.append("".join("1" if r.search(s) else "0" for s in inputs))
    return {"results": results}


def main() -> None:
    """The command line."""
    if len(sys.argv) != 3 or sys.argv[1] not in ("evaluate", "regex"):
        raise SystemExit("usage: python -m vigil._crosslang evaluate|regex input.json")
    with open(sys.argv[2], "rb") as fh:
        doc = json_loads(fh.read())
    out = evaluate(doc) if sys.argv[1] == "evaluate" else regex(doc)
    sys.stdout.write(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
