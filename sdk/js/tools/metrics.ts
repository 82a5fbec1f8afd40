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

import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint, type Histogram } from "@opentelemetry/sdk-metrics";
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
    durationBuckets: vigil.DURATION_BUCKETS,
    spanAttributePrefix: vigil.SPAN_ATTRIBUTE_PREFIX,
  };
  process.stdout.write(JSON.stringify({ constants, recorded }));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
