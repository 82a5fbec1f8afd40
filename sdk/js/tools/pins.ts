// Baggage pins across languages, for the cross-language test
// (internal/crosslang): reads flags and units, and for each unit
//  - evaluates flag "pinned" with the baggage header the Go SDK wrote for
//    it (incoming[i]) and reports what it served, and
//  - evaluates every tracked flag in a scope and reports the baggage
//    header it would send downstream.
//
// Usage: node dist/tools/pins.js input.json > output.json
// Input:  {"flags": [...], "units": ["u", ...], "incoming": ["baggage header", ...], "key": "flag"}
// Output: {"served": ["variant|reason", ...], "outgoing": ["baggage header", ...]}

import { readFileSync } from "node:fs";
import { context, propagation, type TextMapGetter } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CBaggagePropagator } from "@opentelemetry/core";
import { Client } from "../src/client.js";
import type { Flag } from "../src/flag.js";

interface Input {
  flags: Flag[];
  units: string[];
  incoming: string[];
  key: string;
}

const getter: TextMapGetter<Record<string, string>> = {
  get: (c, k) => c[k],
  keys: (c) => Object.keys(c),
};

async function main(path: string): Promise<void> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CBaggagePropagator());
  const input = JSON.parse(readFileSync(path, "utf8")) as Input;
  const client = new Client({ flags: input.flags, logger: { warn: () => {}, error: () => {} } });
  const served: string[] = [];
  const outgoing: string[] = [];
  for (let i = 0; i < input.units.length; i++) {
    const unit = { key: input.units[i]! };
    const incoming = propagation.extract(context.active(), { baggage: input.incoming[i] ?? "" }, getter);
    await context.with(incoming, () =>
      client.withScope(() => {
        const d = client.booleanDetail(input.key, unit, false);
        served.push(`${d.variant}|${d.reason}`);
      }),
    );
    await client.withScope(() => {
      for (const f of input.flags) client.booleanValue(f.key, unit, false);
      const headers: Record<string, string> = {};
      propagation.inject(context.active(), headers);
      outgoing.push(headers.baggage ?? "");
    });
  }
  await client.close();
  process.stdout.write(JSON.stringify({ served, outgoing }));
}

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write("usage: pins.js input.json\n");
  process.exit(2);
}
await main(path);
