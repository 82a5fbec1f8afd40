// Baggage pinning across two services over real HTTP, with OpenTelemetry's
// W3C baggage propagator, in the format the Go SDK writes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { context, propagation } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CBaggagePropagator } from "@opentelemetry/core";
import { MeterProvider, MetricReader, type DataPoint } from "@opentelemetry/sdk-metrics";
import { hash } from "../src/bucket.js";
import { Client } from "../src/client.js";
import { withVigil } from "../src/middleware.js";
import { parsePin } from "../src/pin.js";
import { quiet, rolloutFlag } from "./controller.js";

class TestReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

async function listen(s: Server): Promise<string> {
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

// serve runs handler behind the middleware, with the request's baggage
// extracted first, as OpenTelemetry's HTTP instrumentation does.
function serve(client: Client, handler: (url: URL) => Promise<unknown>): Server {
  const inner = withVigil(client, async (req, res) => {
    const body = await handler(new URL(req.url ?? "/", "http://x"));
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify(body));
  });
  return createServer((req, res) => context.with(propagation.extract(context.active(), req.headers), () => inner(req, res)));
}

test("a variant pinned upstream is served downstream for the same unit", async (t) => {
  const cm = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(cm);
  propagation.setGlobalPropagator(new W3CBaggagePropagator());
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  // Downstream the flag is at 0% (a change the request did not see
  // upstream): the pin still wins, except where the flag is disabled.
  const down = new Client({
    flags: [rolloutFlag("checkout", 0, { tracked: true }), rolloutFlag("killed", 100, { tracked: true, enabled: false })],
    logger: quiet,
    meterProvider,
  });
  const up = new Client({ flags: [rolloutFlag("checkout", 100, { tracked: true }), rolloutFlag("killed", 100, { tracked: true })], logger: quiet });
  const downSrv = serve(down, async (u) => {
    const unit = { key: u.searchParams.get("unit") ?? "" };
    return { checkout: down.booleanDetail("checkout", unit, false), killed: down.booleanDetail("killed", unit, false) };
  });
  const downURL = await listen(downSrv);
  const upSrv = serve(up, async (u) => {
    const unit = u.searchParams.get("unit") ?? "";
    up.booleanValue("checkout", { key: unit }, false);
    up.booleanValue("killed", { key: unit }, false);
    const headers: Record<string, string> = {};
    propagation.inject(context.active(), headers);
    const res = await fetch(`${downURL}/?unit=${encodeURIComponent(u.searchParams.get("downUnit") ?? unit)}`, { headers });
    return { baggage: headers.baggage, down: await res.json() };
  });
  const upURL = await listen(upSrv);
  t.after(async () => {
    await new Promise<void>((r) => upSrv.close(() => r()));
    await new Promise<void>((r) => downSrv.close(() => r()));
    await meterProvider.shutdown();
    cm.disable();
    context.disable();
    propagation.disable();
  });

  type Answer = { baggage: string; down: { checkout: { variant: string; reason: string; value: boolean }; killed: { reason: string } } };
  const same = (await (await fetch(`${upURL}/?unit=user-1`)).json()) as Answer;
  const h = hash("checkout", "user-1").toString(16);
  assert.match(same.baggage, new RegExp(`vigil\\.flag\\.checkout=on;reason=split;unit=${h}`));
  assert.deepEqual([same.down.checkout.variant, same.down.checkout.reason, same.down.checkout.value], ["on", "pinned", true]);
  assert.equal(same.down.killed.reason, "disabled", "a flag disabled downstream wins over the pin");

  const other = (await (await fetch(`${upURL}/?unit=user-1&downUnit=user-2`)).json()) as Answer;
  assert.deepEqual([other.down.checkout.variant, other.down.checkout.reason], ["off", "split"], "a pin is for its unit only");

  // The pinned request counts downstream in the cohort the upstream
  // service evaluated.
  const { resourceMetrics } = await reader.collect();
  const requests = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === "feature_flag.requests");
  const points = (requests?.dataPoints as DataPoint<number>[]).map((d) => [d.attributes["feature_flag.key"], d.attributes["feature_flag.result.variant"], d.attributes["feature_flag.result.reason"], d.value]);
  assert.deepEqual(points.filter((p) => p[0] === "checkout").sort(), [["checkout", "off", "split", 1], ["checkout", "on", "split", 1]]);
});

test("pins written by the Go SDK parse; malformed ones are ignored", () => {
  const bag = propagation.getBaggage(
    new W3CBaggagePropagator().extract(context.active(), {
      baggage: "vigil.flag.a=on;reason=split;unit=65c6e048,vigil.flag.b=on;reason=bogus;unit=1,vigil.flag.c=on;reason=default;unit=123456789,vigil.flag.d=t;unit=00000000ff;reason=targeting_match",
    }, { get: (c, k) => (c as Record<string, string>)[k], keys: (c) => Object.keys(c as object) }),
  )!;
  assert.deepEqual(parsePin(bag.getEntry("vigil.flag.a")), { variant: "on", reason: "split", unit: 0x65c6e048 });
  assert.equal(parsePin(bag.getEntry("vigil.flag.b")), undefined, "unknown reason");
  assert.equal(parsePin(bag.getEntry("vigil.flag.c")), undefined, "unit over 32 bits");
  assert.deepEqual(parsePin(bag.getEntry("vigil.flag.d")), { variant: "t", reason: "targeting_match", unit: 255 });
  assert.equal(parsePin(undefined), undefined);
});
