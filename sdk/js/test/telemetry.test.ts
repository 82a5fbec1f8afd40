// Cohort metrics and span events, read back from the real OpenTelemetry
// SDKs, through real HTTP requests to an Express app and a plain Node
// server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint, type Histogram } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Client } from "../src/client.js";
import { vigilMiddleware, withVigil } from "../src/middleware.js";
import { unitBucket } from "../src/bucket.js";
import type { EvalContext, Flag } from "../src/flag.js";
import { DURATION_BUCKETS } from "../src/telemetry.js";
import { quiet, rolloutFlag } from "./controller.js";

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const flags = [
  rolloutFlag("checkout", 100, { tracked: true, version: 3 }),
  rolloutFlag("quiet", 100, { tracked: false }),
  { key: "color", variants: { red: "red", blue: "blue" }, control: "red", treatment: "blue", enabled: true, tracked: true, rollout: { percent: 0 } },
];

async function listen(s: Server): Promise<string> {
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

interface Point {
  name: string;
  unit: string;
  attrs: Record<string, unknown>;
  value: unknown;
  boundaries?: number[];
}

async function points(reader: TestReader): Promise<Point[]> {
  const { resourceMetrics, errors } = await reader.collect();
  assert.deepEqual(errors, []);
  const out: Point[] = [];
  for (const sm of resourceMetrics.scopeMetrics) {
    assert.equal(sm.scope.name, "@vigil-dev/sdk");
    for (const m of sm.metrics) {
      for (const dp of m.dataPoints as DataPoint<unknown>[]) {
        const p: Point = { name: m.descriptor.name, unit: m.descriptor.unit, attrs: { ...dp.attributes }, value: dp.value };
        if (typeof dp.value === "object") p.boundaries = (dp.value as Histogram).buckets.boundaries;
        out.push(p);
      }
    }
  }
  return out;
}

function setup(t: { after: (fn: () => Promise<void> | void) => void }) {
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const client = new Client({ flags, meterProvider, logger: quiet });
  t.after(async () => {
    await client.close();
    await meterProvider.shutdown();
  });
  return { reader, client };
}

// handle is the same application logic for both servers.
function handle(client: Client, path: string): number {
  const unit = { key: "user-42", attributes: { plan: "gold" } };
  client.booleanValue("checkout", unit, false);
  client.booleanValue("quiet", unit, false);
  switch (path) {
    case "/fail":
      return 503;
    case "/buy":
      client.stringValue("color", unit, "none");
      client.track("checkout.completed");
      return 200;
    case "/throw":
      throw new TypeError("boom");
    case "/report":
      client.reportError(Object.assign(new Error("declined"), { errorType: "payment_declined" }));
      return 402;
  }
  return 200;
}

async function exercise(base: string): Promise<void> {
  for (const path of ["/ok", "/ok", "/fail", "/buy", "/throw", "/report"]) {
    const res = await fetch(base + path);
    await res.arrayBuffer();
  }
}

function assertCohorts(ps: Point[]): void {
  const requests = ps.filter((p) => p.name === "feature_flag.requests");
  const key = (p: Point) => JSON.stringify(Object.entries(p.attrs).sort());
  const byAttrs = new Map(requests.map((p) => [key(p), p.value]));
  // Every unit here is placed by the split, so its cohorts carry its bucket.
  const bucket = String(unitBucket("user-42"));
  const cohort = (k: string, variant: string, extra: Record<string, string> = {}) =>
    key({
      name: "",
      unit: "",
      value: 0,
      attrs: { "feature_flag.key": k, "feature_flag.result.variant": variant, "feature_flag.result.reason": "split", "vigil.unit_bucket": bucket, ...extra },
    });
  assert.equal(byAttrs.get(cohort("checkout", "on")), 3, "two /ok and one /buy");
  assert.equal(byAttrs.get(cohort("checkout", "on", { "error.type": "503" })), 1);
  assert.equal(byAttrs.get(cohort("checkout", "on", { "error.type": "TypeError" })), 1);
  assert.equal(byAttrs.get(cohort("checkout", "on", { "error.type": "payment_declined" })), 1, "a reported error without a 5xx");
  assert.equal(byAttrs.get(cohort("color", "red")), 1);
  assert.equal(requests.length, 5, JSON.stringify(requests));
  for (const p of ps) {
    assert.notEqual(p.attrs["feature_flag.key"], "quiet", "untracked flags are not measured");
    assert.ok(!Object.values(p.attrs).includes("user-42"), "the unit key is never an attribute");
    assert.ok(!("plan" in p.attrs));
  }
  for (const p of requests) assert.equal(p.unit, "{request}");
  const durations = ps.filter((p) => p.name === "feature_flag.request.duration");
  assert.equal(durations.length, 5);
  for (const d of durations) {
    assert.equal(d.unit, "s");
    assert.deepEqual(d.boundaries, [...DURATION_BUCKETS]);
  }
  const total = durations.reduce((n, d) => n + (d.value as Histogram).count, 0);
  assert.equal(total, 7, "one duration per tracked flag per request");
  const events = ps.filter((p) => p.name === "feature_flag.events");
  assert.equal(events.length, 2, JSON.stringify(events));
  for (const e of events) {
    assert.equal(e.unit, "{event}");
    assert.equal(e.value, 1);
    assert.equal(e.attrs["feature_flag.event.name"], "checkout.completed");
    assert.equal(e.attrs["vigil.unit_bucket"], bucket);
  }
  assert.deepEqual(events.map((e) => e.attrs["feature_flag.key"]).sort(), ["checkout", "color"]);
}

test("Express middleware: cohort metrics per request, error.type, events", async (t) => {
  const { reader, client } = setup(t);
  const app = express();
  app.use(vigilMiddleware(client));
  app.get("/{*path}", (req, res) => {
    res.status(handle(client, req.path)).send("done");
  });
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    client.reportError(err);
    res.status(500).send("failed");
  });
  const server = createServer(app);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  await exercise(await listen(server));
  assertCohorts(await points(reader));
});

test("Node http middleware: the same metrics", async (t) => {
  const { reader, client } = setup(t);
  const server = createServer(
    withVigil(client, (req, res) => {
      res.statusCode = handle(client, req.url ?? "/");
      res.end("done");
    }),
  );
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  await exercise(await listen(server));
  assertCohorts(await points(reader));
});

test("withScope: work outside HTTP; a rejected promise marks the scope failed", async (t) => {
  const { reader, client } = setup(t);
  await client.withScope(() => client.booleanValue("checkout", { key: "u" }, false));
  await assert.rejects(
    client.withScope(async () => {
      client.booleanValue("checkout", { key: "u" }, false);
      throw new RangeError("bad");
    }),
  );
  client.booleanValue("checkout", { key: "u" }, false); // no scope: not counted
  const rs = (await points(reader)).filter((p) => p.name === "feature_flag.requests");
  assert.deepEqual(
    rs.map((p) => [p.attrs["error.type"] ?? "", p.value]).sort(),
    [["", 1], ["RangeError", 1]],
  );
});

test("unit bucket: on split cohorts only, every cohort metric; none on targeted, default or disabled; untracked record nothing", async (t) => {
  const split: Flag = {
    ...rolloutFlag("split", 50, { tracked: true }),
    targets: [{ variant: "on", units: ["user-3", "user-4"] }],
    rules: [{ variant: "off", when: [{ attribute: "plan", op: "in", values: ["gold"] }] }],
  };
  const noRollout: Flag = { ...rolloutFlag("no-rollout", 0, { tracked: true }), rollout: undefined };
  const disabled: Flag = { ...rolloutFlag("disabled", 100, { tracked: true }), enabled: false };
  const all: Flag[] = [split, noRollout, disabled, rolloutFlag("untracked", 100, { tracked: false })];
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const client = new Client({ flags: all, meterProvider, logger: quiet });
  t.after(async () => {
    await client.close();
    await meterProvider.shutdown();
  });
  const want = new Map<string, number>();
  const reasons = new Set<string>();
  const buckets = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const unit: EvalContext = { key: `user-${i}`, attributes: i % 10 === 0 ? { plan: "gold" } : {} };
    await client.withScope(() => {
      for (const f of all) {
        const d = client.booleanDetail(f.key, unit, false);
        if (!f.tracked) continue;
        reasons.add(d.reason);
        const attrs: Record<string, string> = { "feature_flag.key": f.key, "feature_flag.result.variant": d.variant, "feature_flag.result.reason": d.reason };
        if (d.reason === "split") {
          attrs["vigil.unit_bucket"] = String(unitBucket(unit.key!));
          buckets.add(attrs["vigil.unit_bucket"]);
        }
        const k = JSON.stringify(Object.entries(attrs).sort());
        want.set(k, (want.get(k) ?? 0) + 1);
      }
      client.track("paid");
    });
  }
  // The population must reach every reason and every bucket, or the
  // comparison below would prove less than it claims.
  assert.deepEqual([...reasons].sort(), ["default", "disabled", "split", "targeting_match"]);
  assert.equal(buckets.size, 8);
  const ps = await points(reader);
  for (const name of ["feature_flag.requests", "feature_flag.request.duration", "feature_flag.events"]) {
    const got = new Map<string, number>();
    for (const p of ps.filter((p) => p.name === name)) {
      const { "feature_flag.event.name": ev, ...attrs } = p.attrs;
      assert.equal(ev, name === "feature_flag.events" ? "paid" : undefined);
      got.set(JSON.stringify(Object.entries(attrs).sort()), typeof p.value === "number" ? p.value : (p.value as Histogram).count);
    }
    assert.deepEqual([...got.entries()].sort(), [...want.entries()].sort(), name);
  }
});

test("unit bucket: flags evaluated for different units in one scope count in their own unit's bucket", async (t) => {
  const { reader, client } = setup(t);
  let u2 = "user-2";
  for (let i = 3; unitBucket(u2) === unitBucket("user-1"); i++) u2 = `user-${i}`;
  await client.withScope(() => {
    client.booleanValue("checkout", { key: "user-1" }, false);
    client.stringValue("color", { key: u2 }, "none");
    client.booleanValue("checkout", { key: u2 }, false); // the first result of a flag counts
  });
  const rs = (await points(reader)).filter((p) => p.name === "feature_flag.requests");
  assert.deepEqual(
    rs.map((p) => [p.attrs["feature_flag.key"], p.attrs["vigil.unit_bucket"], p.value]).sort(),
    [
      ["checkout", String(unitBucket("user-1")), 1],
      ["color", String(unitBucket(u2)), 1],
    ],
  );
});

test("span event feature_flag.evaluation on the active span", async (t) => {
  const cm = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(cm);
  t.after(() => {
    cm.disable();
    context.disable();
  });
  const exporter = new InMemorySpanExporter();
  const tp = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = tp.getTracer("test");
  for (const recordUnitKey of [false, true]) {
    const client = new Client({ flags, logger: quiet, recordUnitKey });
    exporter.reset();
    tracer.startActiveSpan("request", (span) => {
      client.booleanValue("checkout", { key: "user-42" }, false);
      client.booleanValue("missing", { key: "user-42" }, false);
      span.end();
    });
    await client.close();
    const [span] = exporter.getFinishedSpans();
    assert.ok(span);
    assert.equal(span.attributes["vigil.flag.checkout"], "on");
    const evs = span.events.filter((e) => e.name === "feature_flag.evaluation");
    assert.equal(evs.length, 2);
    const want: Record<string, unknown> = {
      "feature_flag.key": "checkout",
      "feature_flag.provider.name": "vigil",
      "feature_flag.result.reason": "split",
      "feature_flag.result.variant": "on",
      "feature_flag.version": "3",
    };
    if (recordUnitKey) want["feature_flag.context.id"] = "user-42";
    assert.deepEqual(evs[0]!.attributes, want);
    assert.deepEqual(evs[1]!.attributes, {
      "feature_flag.key": "missing",
      "feature_flag.provider.name": "vigil",
      "feature_flag.result.reason": "error",
      "error.type": "flag_not_found",
      ...(recordUnitKey ? { "feature_flag.context.id": "user-42" } : {}),
    });
  }
  assert.equal(trace.getActiveSpan(), undefined);
});
