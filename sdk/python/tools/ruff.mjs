// Runs ruff (its WebAssembly build, pinned in package.json) over the Python
// SDK: lint and format check, as `ruff check` and `ruff format --check`
// would. The WebAssembly build is used because it comes from the npm
// registry, which CI reaches. Usage: node ruff.mjs [--fix-format] DIR...
// Exits 1 on any finding.

import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { PositionEncoding, Workspace } from "@astral-sh/ruff-wasm-nodejs";

// The settings, as pyproject.toml's [tool.ruff] would hold them.
const settings = {
  "line-length": 120,
  "target-version": "py310",
  lint: {
    select: ["E", "F", "W", "I", "B", "UP", "SIM", "RUF", "C4", "PIE", "PL"],
    ignore: ["E501", "RUF001", "RUF002", "RUF003", "SIM905", "PLR0911", "PLR0912", "PLR0913", "PLR0915", "PLR2004", "PLC0415", "PLW0603"],
    isort: { "known-first-party": ["vigil"], "known-local-folder": ["conftest", "vigilserve"] },
  },
  format: { "quote-style": "double" },
};

function pythonFiles(path) {
  if (statSync(path).isFile()) return path.endsWith(".py") ? [path] : [];
  return readdirSync(path)
    .filter((n) => !n.startsWith(".") && n !== "node_modules" && n !== "__pycache__")
    .flatMap((n) => pythonFiles(join(path, n)));
}

const args = process.argv.slice(2);
const fix = args[0] === "--fix-format";
const roots = fix ? args.slice(1) : args;
if (roots.length === 0) {
  process.stderr.write("usage: node ruff.mjs [--fix-format] DIR...\n");
  process.exit(2);
}
const ws = new Workspace(settings, PositionEncoding.Utf8);
let findings = 0;
let files = 0;
for (const root of roots) {
  for (const file of pythonFiles(root)) {
    files++;
    const src = readFileSync(file, "utf8");
    const name = relative(process.cwd(), file);
    for (const d of ws.check(src)) {
      findings++;
      process.stdout.write(`${name}:${d.start_location.row}:${d.start_location.column}: ${d.code ?? "syntax"} ${d.message}\n`);
    }
    const formatted = ws.format(src);
    if (formatted !== src) {
      if (fix) {
        writeFileSync(file, formatted);
      } else {
        findings++;
        process.stdout.write(`${name}: would be reformatted (node ruff.mjs --fix-format)\n`);
      }
    }
  }
}
process.stdout.write(`ruff ${Workspace.version()}: ${files} files, ${findings} findings\n`);
process.exit(findings > 0 ? 1 : 0);
