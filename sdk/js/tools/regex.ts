// Runs RE2 patterns through the SDK's translation, for the cross-language
// test of `matches` (internal/crosslang), which compares with Go's regexp.
//
// Usage: node dist/tools/regex.js input.json > output.json
// Input:  {"patterns": ["..."], "inputs": ["..."]}
// Output: {"results": ["0101...", "U: why", ...]}: per pattern, one 0 or 1
// per input, or U and the reason when the pattern is outside the subset.

import { readFileSync } from "node:fs";
import { compileRE2 } from "../src/re2.js";

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write("usage: regex.js input.json\n");
  process.exit(2);
}
const input = JSON.parse(readFileSync(path, "utf8")) as { patterns: string[]; inputs: string[] };
const results = input.patterns.map((p) => {
  let re: RegExp;
  try {
    re = compileRE2(p);
  } catch (e) {
    return "U: " + (e as Error).message;
  }
  return input.inputs.map((s) => (re.test(s) ? "1" : "0")).join("");
});
process.stdout.write(JSON.stringify({ results }));
