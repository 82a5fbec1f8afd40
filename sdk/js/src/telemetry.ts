// OpenTelemetry: the span event of every evaluation and the cohort metrics
// of tracked flags, with exactly the names, units, buckets and attributes of
// the Go SDK (sdk/metrics.go), so that rollout analysis sees every language
// alike. The unit key is never a metric attribute.

import { AsyncLocalStorage } from "node:async_hooks";
import {
  metrics,
  propagation,
  trace,
  ValueType,
  type Attributes,
  type Counter,
  type Histogram,
  type Baggage,
  type Context,
  type MeterProvider,
} from "@opentelemetry/api";
import { unitBucket } from "./bucket.js";
import type { Detail, Reason } from "./flag.js";
import { parsePin, PinningContext, PIN_PREFIX, type Pin } from "./pin.js";

/** The cohort metrics: the contract analysis, dashboards and alerts read. */
export const METRIC_REQUESTS = "feature_flag.requests";
/** Duration of requests that evaluated a tracked flag, in seconds. */
export const METRIC_REQUEST_DURATION = "feature_flag.request.duration";
/** Business events in requests that evaluated a tracked flag. */
export const METRIC_EVENTS = "feature_flag.events";

/** Attribute keys of the cohort metrics. */
export const ATTR_KEY = "feature_flag.key";
export const ATTR_VARIANT = "feature_flag.result.variant";
export const ATTR_REASON = "feature_flag.result.reason";
export const ATTR_ERROR_TYPE = "error.type";
export const ATTR_EVENT_NAME = "feature_flag.event.name";
/**
 * The unit's bucket (unitBucket) as a decimal string "0" to "7", on the
 * cohort metrics of units placed by the split only, never on the span event.
 */
export const ATTR_UNIT_BUCKET = "vigil.unit_bucket";

/** The span event every evaluation adds to the active span. */
export const SPAN_EVENT = "feature_flag.evaluation";
/** The span attribute "vigil.flag.<key>" set to the variant served. */
export const SPAN_ATTRIBUTE_PREFIX = "vigil.flag.";

/** The boundaries, in seconds, of feature_flag.request.duration: HTTP latencies from 5 ms to 10 s. */
export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 7.5, 10,
];

/** The instrumentation scope of the SDK's metrics. */
export const SCOPE_NAME = "@vigil-dev/sdk";
/** The SDK's version. */
export const SDK_VERSION = "0.1.0";

interface Entry {
  variant: string;
  reason: Reason;
  /** the unit bucket the cohort carries, "" for none */
  bucket: string;
}

/**
 * One unit of work (an HTTP request, a queue message, a job) whose outcome
 * is recorded in the cohort metrics of every tracked flag evaluated within
 * it. The middlewares create one per request; other work uses
 * Client.withScope.
 */
export class Scope {
  /** @internal */
  readonly entries = new Map<string, Entry>();
  /** pins made in this scope, by flag */
  private readonly pins = new Map<string, Pin>();
  private ended = false;
  private errType = "";
  private readonly start = process.hrtime.bigint();
  /** the last unit placed by a split, and its bucket: one request's flags are mostly evaluated for one unit */
  private bucketUnit: string | undefined;
  private bucket = "";

  /** @internal incoming is the baggage the unit of work arrived with. */
  constructor(
    private readonly telemetry: Telemetry,
    private readonly incoming: Baggage | undefined = propagation.getActiveBaggage(),
  ) {}

  /**
   * @internal Registers a tracked flag's result for unit and pins it when
   * pin is given; the first result per flag wins. Only the split places
   * units at random, so only its cohorts carry the unit's bucket.
   */
  add(key: string, variant: string, reason: Reason, unit: string, pin?: Pin): void {
    if (this.ended || this.entries.has(key)) return;
    let bucket = "";
    if (reason === "split") {
      if (this.bucketUnit !== unit) {
        this.bucketUnit = unit;
        this.bucket = String(unitBucket(unit));
      }
      bucket = this.bucket;
    }
    this.entries.set(key, { variant, reason, bucket });
    // Pinned upstream but not honoured here (another unit, or a variant
    // this service lacks): leave the upstream pin to travel.
    if (pin !== undefined && this.incoming?.getEntry(PIN_PREFIX + key) === undefined) this.pins.set(key, pin);
  }

  /**
   * @internal The pin of a flag for a unit: one this scope made for the same
   * unit, else one that came in with the work for it.
   */
  lookupPin(key: string, unit: number): Pin | undefined {
    const own = this.pins.get(key);
    if (own !== undefined && own.unit === unit) return own;
    const p = parsePin(this.incoming?.getEntry(PIN_PREFIX + key));
    return p !== undefined && p.unit === unit ? p : undefined;
  }

  /**
   * @internal A context whose baggage carries the scope's pins, for the work
   * to run in, so that calls it makes propagate them.
   */
  context(parent: Context): Context {
    return new PinningContext(parent, () => this.pins);
  }

  /**
   * Marks the scope failed, for work that fails without a 5xx status or
   * wants a more precise error.type. The first error reported wins.
   */
  reportError(err: unknown): void {
    if (this.errType === "" && err !== undefined && err !== null) this.errType = errorType(err);
  }

  /** Ends the scope; a non-nullish err marks it failed. Only the first end records. */
  end(err?: unknown): void {
    this.finish(err === undefined || err === null ? "" : errorType(err), this.elapsed());
  }

  /** Ends the scope of an HTTP request: a 5xx status marks it failed with error.type the status code. */
  endStatus(status: number): void {
    this.finish(status >= 500 && status <= 599 ? String(status) : "", this.elapsed());
  }

  /** Ends the scope with a duration, in seconds, that the caller measured. */
  observe(err: unknown, seconds: number): void {
    this.finish(err === undefined || err === null ? "" : errorType(err), seconds);
  }

  /** Counts a business event in the cohort of every tracked flag evaluated so far. */
  track(name: string): void {
    for (const [key, e] of this.entries) this.telemetry.event(key, e.variant, e.reason, e.bucket, name);
  }

  private elapsed(): number {
    return Number(process.hrtime.bigint() - this.start) / 1e9;
  }

  private finish(errType: string, seconds: number): void {
    if (this.ended) return;
    this.ended = true;
    const t = this.errType !== "" ? this.errType : errType;
    for (const [key, e] of this.entries) this.telemetry.request(key, e.variant, e.reason, e.bucket, t, seconds);
  }
}

/**
 * The error.type of err: its errorType property when it has one, else its
 * name when that is more than "Error", else "error".
 */
export function errorType(err: unknown): string {
  if (err !== null && typeof err === "object") {
    const t = (err as { errorType?: unknown }).errorType;
    if (typeof t === "string" && t !== "") return t;
    const n = (err as { name?: unknown }).name;
    if (typeof n === "string" && n !== "" && n !== "Error") return n;
  }
  return "error";
}

/** Options of the telemetry. */
export interface TelemetryOptions {
  /** records the cohort metrics; the global one when absent */
  meterProvider?: MeterProvider;
  /** adds the unit key (feature_flag.context.id) to span events; off by default, unit keys are personal data */
  recordUnitKey?: boolean;
}

const MAX_COHORTS = 10000;

/** @internal The instruments, the scope storage and the span event. */
export class Telemetry {
  readonly scopes = new AsyncLocalStorage<Scope>();
  private readonly requests: Counter;
  private readonly duration: Histogram;
  private readonly events: Counter;
  private readonly cohorts = new Map<string, Attributes>();
  private readonly recordUnitKey: boolean;

  constructor(opts: TelemetryOptions) {
    const mp = opts.meterProvider ?? metrics.getMeterProvider();
    const m = mp.getMeter(SCOPE_NAME, SDK_VERSION);
    this.requests = m.createCounter(METRIC_REQUESTS, {
      unit: "{request}",
      description: "Requests that evaluated a tracked feature flag, by flag, variant and reason.",
      valueType: ValueType.INT,
    });
    this.duration = m.createHistogram(METRIC_REQUEST_DURATION, {
      unit: "s",
      description: "Duration of requests that evaluated a tracked feature flag, by flag, variant and reason.",
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS] },
    });
    this.events = m.createCounter(METRIC_EVENTS, {
      unit: "{event}",
      description: "Business events in requests that evaluated a tracked feature flag, by event name, flag, variant and reason.",
      valueType: ValueType.INT,
    });
    this.recordUnitKey = opts.recordUnitKey === true;
  }

  private attrs(key: string, variant: string, reason: string, bucket: string, errType: string, event: string): Attributes {
    const id = `${key}\0${variant}\0${reason}\0${bucket}\0${errType}\0${event}`;
    let a = this.cohorts.get(id);
    if (a === undefined) {
      a = { [ATTR_KEY]: key, [ATTR_VARIANT]: variant, [ATTR_REASON]: reason };
      if (bucket !== "") a[ATTR_UNIT_BUCKET] = bucket;
      if (errType !== "") a[ATTR_ERROR_TYPE] = errType;
      if (event !== "") a[ATTR_EVENT_NAME] = event;
      Object.freeze(a);
      if (this.cohorts.size < MAX_COHORTS) this.cohorts.set(id, a);
    }
    return a;
  }

  request(key: string, variant: string, reason: string, bucket: string, errType: string, seconds: number): void {
    const a = this.attrs(key, variant, reason, bucket, errType, "");
    this.requests.add(1, a);
    this.duration.record(seconds, a);
  }

  event(key: string, variant: string, reason: string, bucket: string, name: string): void {
    this.events.add(1, this.attrs(key, variant, reason, bucket, "", name));
  }

  /**
   * Registers d with the scope, if any, under the cohort reason (for a
   * pinned variant, the reason the pinning service evaluated), and tags the
   * active span.
   */
  observe(d: Detail, unit: string, scope: Scope | undefined, cohort: Reason, pin: Pin | undefined): void {
    if (scope !== undefined && d.tracked && d.variant !== "") scope.add(d.key, d.variant, cohort, unit, pin);
    const span = trace.getActiveSpan();
    if (span === undefined || !span.isRecording()) return;
    const a: Attributes = {
      "feature_flag.key": d.key,
      "feature_flag.provider.name": "vigil",
      "feature_flag.result.reason": d.reason,
    };
    if (d.variant !== "") a["feature_flag.result.variant"] = d.variant;
    if (d.version !== 0) a["feature_flag.version"] = String(d.version);
    if (d.errorType !== undefined) a["error.type"] = d.errorType;
    if (this.recordUnitKey && unit !== "") a["feature_flag.context.id"] = unit;
    span.addEvent(SPAN_EVENT, a);
    if (d.variant !== "") span.setAttribute(SPAN_ATTRIBUTE_PREFIX + d.key, d.variant);
  }
}
