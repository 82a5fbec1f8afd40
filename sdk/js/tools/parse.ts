// Parses flags files with the SDK, for the cross-language test
// (internal/crosslang), which parses the same documents with Go.
//
// Usage: node dist/tools/parse.js input.json > output.json
// Input:  {"documents": ["yaml or json", ...]}
// Output: {"results": [{"ok": true, "flags": [...]} | {"ok": false, "error": "..."}, ...]}

import { readFileSync } from "node:fs";
import { parseFlagsFile } from "../src/snapshot.js";

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write("usage: parse.js input.json\n");
  process.exit(2);
}
const input = JSON.parse(readFileSync(path, "utf8")) as { documents: string[] };
const results = input.documents.map((d) => {
  try {
    return { ok: true, flags: parseFlagsFile(d) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
});
process.stdout.write(JSON.stringify({ results }));
