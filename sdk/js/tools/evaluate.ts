// Evaluates every flag of a document for every unit and context, for the
// cross-language test (internal/crosslang in the Go module), which runs the
// Go reference over the same input and compares every answer.
//
// Usage: node dist/tools/evaluate.js input.json > output.json
//
// Input:  {"flags": [...], "units": ["u1", ...], "contexts": [{"key": "u", "attributes": {...}}, ...]}
// Output: {"outcomes": ["variant|reason|errorType", ...],
//          "units": {"<flag>": "<one char per unit>"}, "contexts": {"<flag>": "<one char per context>"}}
// where char c stands for outcomes[c.charCodeAt(0) - 0x100]; chars from
// U+0100 on keep the output compact and clear of JSON escapes.

import { readFileSync } from "node:fs";
import { readSnapshotDocument, Snapshot } from "../src/snapshot.js";
import type { Detail, EvalContext } from "../src/flag.js";

interface Input {
  flags: unknown[];
  units?: string[];
  contexts?: EvalContext[];
}

function main(path: string): void {
  const input = JSON.parse(readFileSync(path, "utf8")) as Input;
  const doc = readSnapshotDocument({ revision: 1, flags: input.flags });
  if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join("\n"));
  const snap = Snapshot.of(1, doc.flags);
  const outcomes: string[] = [];
  const index = new Map<string, string>();
  const code = (d: Detail): string => {
    const k = `${d.variant}|${d.reason}|${d.errorType ?? ""}`;
    let c = index.get(k);
    if (c === undefined) {
      c = String.fromCharCode(0x100 + outcomes.length);
      outcomes.push(k);
      index.set(k, c);
    }
    return c;
  };
  const units: Record<string, string> = {};
  const contexts: Record<string, string> = {};
  for (const f of doc.flags) {
    const u: string[] = [];
    for (const unit of input.units ?? []) u.push(code(snap.evaluate(f.key, { key: unit })));
    units[f.key] = u.join("");
    const c: string[] = [];
    for (const ctx of input.contexts ?? []) c.push(code(snap.evaluate(f.key, ctx)));
    contexts[f.key] = c.join("");
  }
  process.stdout.write(JSON.stringify({ outcomes, units, contexts }));
}

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write("usage: evaluate.js input.json\n");
  process.exit(2);
}
main(path);
