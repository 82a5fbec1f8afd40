// The in-process provider through the real @openfeature/server-sdk.
import { test } from "node:test";
import assert from "node:assert/strict";
import { OpenFeature, ProviderEvents, ProviderStatus, type EventDetails } from "@openfeature/server-sdk";
import { MeterProvider, MetricReader, type DataPoint } from "@opentelemetry/sdk-metrics";
import { unitBucket } from "../src/bucket.js";
import { Client } from "../src/client.js";
import { VigilProvider } from "../src/openfeature.js";
import { withVigil } from "../src/middleware.js";
import { eventually, quiet, rolloutFlag, TestController, TOKEN } from "./controller.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

class TestReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

test("OpenFeature: every type, reasons, error codes, events, tracking", async (t) => {
  const ctl = new TestController();
  ctl.put(rolloutFlag("checkout", 100, { tracked: true }));
  ctl.put({ key: "color", variants: { a: "red", b: "blue" }, control: "a", enabled: true, rules: [{ variant: "b", when: [{ attribute: "plan", op: "in", values: ["gold"] }] }] });
  ctl.put({ key: "limit", variants: { a: 10, b: 2.5 }, control: "a", treatment: "b", enabled: true, rollout: { percent: 0 } });
  ctl.put({ key: "config", variants: { a: { retries: 3 } }, control: "a", enabled: false });
  await ctl.start();
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const client = new Client({ serverURL: ctl.url, token: TOKEN, logger: quiet, backoffMin: 20, backoffMax: 50, pollInterval: 50, meterProvider });
  const provider = new VigilProvider(client);
  t.after(async () => {
    await OpenFeature.close();
    await client.close();
    await ctl.stop();
    await meterProvider.shutdown();
  });
  await OpenFeature.setProviderAndWait("vigil-test", provider);
  const of = OpenFeature.getClient("vigil-test");
  assert.equal(of.providerStatus, ProviderStatus.READY);

  const b = await of.getBooleanDetails("checkout", false, { targetingKey: "user-1" });
  assert.deepEqual([b.value, b.variant, b.reason, b.errorCode], [true, "on", "SPLIT", undefined]);
  const s = await of.getStringDetails("color", "none", { targetingKey: "user-1", plan: "gold" });
  assert.deepEqual([s.value, s.variant, s.reason], ["blue", "b", "TARGETING_MATCH"]);
  assert.equal((await of.getStringDetails("color", "none", { targetingKey: "user-1", plan: "free" })).reason, "DEFAULT");
  const n = await of.getNumberDetails("limit", 0, { targetingKey: "user-1" });
  assert.deepEqual([n.value, n.variant, n.reason], [10, "a", "SPLIT"]);
  const o = await of.getObjectDetails("config", {}, { targetingKey: "user-1" });
  assert.deepEqual([o.value, o.reason], [{ retries: 3 }, "DISABLED"]);
  // Object evaluation takes any JSON value, as Go's provider does.
  const scalar = await of.getObjectDetails("checkout", {}, { targetingKey: "user-1" });
  assert.deepEqual([scalar.value, scalar.variant, scalar.errorCode], [true, "on", undefined]);

  const missing = await of.getBooleanDetails("nope", true, { targetingKey: "u" });
  assert.deepEqual([missing.value, missing.reason, missing.errorCode], [true, "ERROR", "FLAG_NOT_FOUND"]);
  const mismatch = await of.getBooleanDetails("color", false, { targetingKey: "u" });
  assert.deepEqual([mismatch.value, mismatch.errorCode], [false, "TYPE_MISMATCH"]);
  const noKey = await of.getBooleanDetails("checkout", false, {});
  assert.equal(noKey.errorCode, "TARGETING_KEY_MISSING");
  assert.equal(noKey.value, false);

  // Configuration changed, with the changed keys.
  const changed: EventDetails[] = [];
  of.addHandler(ProviderEvents.ConfigurationChanged, (d) => changed.push(d!));
  ctl.put(rolloutFlag("checkout", 0, { tracked: true }));
  await eventually(() => changed.length === 1, "configuration changed");
  assert.deepEqual(changed[0]!.flagsChanged, ["checkout"]);
  assert.equal(await of.getBooleanValue("checkout", true, { targetingKey: "user-1" }), false);

  // Stale while the controller is unreachable, ready when it is back.
  const seen: string[] = [];
  of.addHandler(ProviderEvents.Stale, () => seen.push("stale"));
  of.addHandler(ProviderEvents.Ready, () => seen.push("ready"));
  ctl.goDown();
  await eventually(() => seen.includes("stale"), "stale");
  assert.equal(of.providerStatus, ProviderStatus.STALE);
  assert.equal(await of.getBooleanValue("checkout", true, { targetingKey: "user-1" }), false, "last snapshot served");
  ctl.comeBack();
  await eventually(() => seen.at(-1) === "ready", "ready again");
  assert.equal(of.providerStatus, ProviderStatus.READY);

  // Track counts a business event per cohort of the request's tracked flags.
  ctl.put(rolloutFlag("checkout", 100, { tracked: true }));
  await eventually(() => client.booleanValue("checkout", { key: "u" }, false), "checkout back at 100%");
  const server = createServer(
    withVigil(client, async (_req, res) => {
      await of.getBooleanValue("checkout", false, { targetingKey: "user-9" });
      of.track("checkout.completed", { targetingKey: "user-9" }, { value: 30 });
      res.end("ok");
    }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  await (await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)).text();
  await new Promise<void>((r) => server.close(() => r()));
  const { resourceMetrics } = await reader.collect();
  const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
  const events = metrics.find((m) => m.descriptor.name === "feature_flag.events");
  assert.ok(events, "feature_flag.events recorded");
  assert.deepEqual(
    (events.dataPoints as DataPoint<number>[]).map((d) => [d.attributes, d.value]),
    [
      [
        {
          "feature_flag.key": "checkout",
          "feature_flag.result.variant": "on",
          "feature_flag.result.reason": "split",
          "vigil.unit_bucket": String(unitBucket("user-9")),
          "feature_flag.event.name": "checkout.completed",
        },
        1,
      ],
    ],
  );
  const requests = metrics.find((m) => m.descriptor.name === "feature_flag.requests");
  assert.equal((requests?.dataPoints as DataPoint<number>[]).reduce((n, d) => n + d.value, 0), 1);
});

test("OpenFeature: a provider that never gets flags fails to initialize", async (t) => {
  const provider = new VigilProvider({ serverURL: "http://127.0.0.1:9", token: TOKEN, initTimeout: 200, logger: quiet, backoffMin: 50 });
  t.after(() => OpenFeature.clearProviders());
  await assert.rejects(OpenFeature.setProviderAndWait("unreachable", provider), /no flags yet/);
  const of = OpenFeature.getClient("unreachable");
  assert.equal(of.providerStatus, ProviderStatus.ERROR);
  const d = await of.getBooleanDetails("x", true, { targetingKey: "u" });
  assert.equal(d.value, true);
  await provider.onClose();
});
