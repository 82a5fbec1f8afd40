// Reports the SDK's metric contract for the cross-language test
// (internal/crosslang), which compares it with the Go SDK's (sdk/metrics.go):
// the exported names, attribute keys and bucket boundaries, and what the SDK
// actually records through a real OpenTelemetry MeterProvider for one
// succeeding and one failing unit of work with a business event. The Go test
// records the same work with the Go SDK, so a constant that is right but
// unused would not pass either.
//
// Usage: node dist/tools/metrics.js > output.json
// Output: {"constants": {...},
//          "recorded": [{"name", "unit", "attributeKeys": [[...], ...], "boundaries": [...]}, ...]}
//
// With a file {"units": [...]} as argument it records instead one good
// unit of work per unit that evaluates a tracked flag (50% split, targets
// "vip-1" on and "staff-1" off) and an untracked one and counts a business
// event, and prints every point as "name|key=value,...|count", sorted: the
// cross-language test requires the Go SDK's points, unit buckets included,
// to be these.
// Output: {"points": ["feature_flag.events|feature_flag.event.name=paid,...|1", ...]}

import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint, type Histogram } from "@opentelemetry/sdk-metrics";
import { readFileSync } from "node:fs";
import * as vigil from "../src/index.js";

class Reader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

async function main(): Promise<void> {
  const reader = new Reader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const client = new vigil.Client({
    flags: [
      {
        key: "checkout",
        variants: { off: false, on: true },
        control: "off",
        treatment: "on",
        enabled: true,
        tracked: true,
        rollout: { percent: 100 },
      },
    ],
    meterProvider,
    logger: { warn: () => {}, error: () => {} },
  });
  const unit = { key: "user-1" };
  await client.withScope(() => {
    client.booleanValue("checkout", unit, false);
    client.track("checkout.completed");
  });
  await client
    .withScope(() => {
      client.booleanValue("checkout", unit, false);
      throw new TypeError("failed on purpose");
    })
    .catch(() => {});

  const { resourceMetrics, errors } = await reader.collect();
  if (errors.length > 0) throw new Error(`collect: ${errors.join("; ")}`);
  const recorded = resourceMetrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .map((m) => {
      const points = m.dataPoints as DataPoint<unknown>[];
      const out: { name: string; unit: string; attributeKeys: string[][]; boundaries?: number[] } = {
        name: m.descriptor.name,
        unit: m.descriptor.unit,
        attributeKeys: points.map((p) => Object.keys(p.attributes).sort()),
      };
      const h = points.find((p) => typeof p.value === "object");
      if (h !== undefined) out.boundaries = (h.value as Histogram).buckets.boundaries;
      return out;
    });
  await client.close();
  await meterProvider.shutdown();

  const constants = {
    metricRequests: vigil.METRIC_REQUESTS,
    metricRequestDuration: vigil.METRIC_REQUEST_DURATION,
    metricEvents: vigil.METRIC_EVENTS,
    attrKey: vigil.ATTR_KEY,
    attrVariant: vigil.ATTR_VARIANT,
    attrReason: vigil.ATTR_REASON,
    attrErrorType: vigil.ATTR_ERROR_TYPE,
    attrEventName: vigil.ATTR_EVENT_NAME,
    attrUnitBucket: vigil.ATTR_UNIT_BUCKET,
    unitBuckets: vigil.UNIT_BUCKETS,
    unitBucketSalt: vigil.UNIT_BUCKET_SALT,
    durationBuckets: vigil.DURATION_BUCKETS,
    spanAttributePrefix: vigil.SPAN_ATTRIBUTE_PREFIX,
  };
  process.stdout.write(JSON.stringify({ constants, recorded }));
}

async function unitPoints(path: string): Promise<void> {
  const { units } = JSON.parse(readFileSync(path, "utf8")) as { units: string[] };
  const reader = new Reader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const onOff = { variants: { off: false, on: true }, control: "off", treatment: "on", enabled: true, rollout: { percent: 50 } };
  const client = new vigil.Client({
    flags: [
      {
        key: "split",
        ...onOff,
        tracked: true,
        targets: [
          { variant: "on", units: ["vip-1"] },
          { variant: "off", units: ["staff-1"] },
        ],
      },
      { key: "quiet", ...onOff, tracked: false },
    ],
    meterProvider,
    logger: { warn: () => {}, error: () => {} },
  });
  for (const key of units) {
    await client.withScope(() => {
      client.booleanValue("split", { key }, false);
      client.booleanValue("quiet", { key }, false);
      client.track("paid");
    });
  }
  const { resourceMetrics, errors } = await reader.collect();
  if (errors.length > 0) throw new Error(`collect: ${errors.join("; ")}`);
  const points: string[] = [];
  for (const m of resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)) {
    for (const p of m.dataPoints as DataPoint<unknown>[]) {
      const attrs = Object.entries(p.attributes)
        .map(([k, v]) => `${k}=${String(v)}`)
        .sort()
        .join(",");
      const n = typeof p.value === "number" ? p.value : (p.value as Histogram).count;
      points.push(`${m.descriptor.name}|${attrs}|${n}`);
    }
  }
  await client.close();
  await meterProvider.shutdown();
  process.stdout.write(JSON.stringify({ points: points.sort() }));
}

(process.argv[2] !== undefined ? unitPoints(process.argv[2]) : main()).catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
