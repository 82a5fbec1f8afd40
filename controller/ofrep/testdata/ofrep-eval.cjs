// Evaluates flags for many units through the real OpenFeature JavaScript
// server SDK and its OFREP provider, against a Vigil controller. Run by
// ofrep_test.go: node ofrep-eval.cjs SDK_JS_DIR INPUT.json > OUTPUT.json
//
// Input:  {"baseUrl": "...", "token": "...", "flags": [{"key": "k", "type": "boolean", "default": false}],
//          "units": [{"targetingKey": "u", "plan": "gold"}, ...]}
// Output: {"k": ["variant|REASON|ERROR_CODE|value-as-JSON", ...], ...}
"use strict";
const { createRequire } = require("node:module");
const { readFileSync } = require("node:fs");
const path = require("node:path");

async function main() {
  const [sdkDir, inputPath] = process.argv.slice(2);
  // The packages are installed in the TypeScript SDK's node_modules.
  const req = createRequire(path.join(path.resolve(sdkDir), "package.json"));
  const { OpenFeature } = req("@openfeature/server-sdk");
  const { OFREPProvider } = req("@openfeature/ofrep-provider");
  const input = JSON.parse(readFileSync(inputPath, "utf8"));
  await OpenFeature.setProviderAndWait(
    new OFREPProvider({ baseUrl: input.baseUrl, headers: [["Authorization", `Bearer ${input.token}`]] }),
  );
  const client = OpenFeature.getClient();
  const get = {
    boolean: (k, d, c) => client.getBooleanDetails(k, d, c),
    string: (k, d, c) => client.getStringDetails(k, d, c),
    number: (k, d, c) => client.getNumberDetails(k, d, c),
    object: (k, d, c) => client.getObjectDetails(k, d, c),
  };
  const out = {};
  for (const f of input.flags) {
    const results = new Array(input.units.length);
    let next = 0;
    // A few requests in flight at once, as a busy service would make.
    const worker = async () => {
      while (next < input.units.length) {
        const i = next++;
        const d = await get[f.type](f.key, f.default, input.units[i]);
        results[i] = `${d.variant ?? ""}|${d.reason ?? ""}|${d.errorCode ?? ""}|${JSON.stringify(d.value)}`;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    out[f.key] = results;
  }
  await OpenFeature.close();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`ofrep-eval: ${e.stack ?? e}\n`);
  process.exit(1);
});
