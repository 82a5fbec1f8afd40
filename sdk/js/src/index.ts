// Vigil's TypeScript SDK: in-memory flag evaluation with bucketing v1,
// delivery from the controller (stream, polling, cache) or a flags file,
// and OpenTelemetry cohort metrics. The OpenFeature provider is in
// "@vigil-dev/sdk/openfeature".

export { BUCKETING_VERSION, BUCKETS, UNIT_BUCKETS, UNIT_BUCKET_SALT, bucket, hash, millipercent, unitBucket } from "./bucket.js";
export { AuthError, Client, type ClientConfig, type ClientEvents, type Logger } from "./client.js";
export {
  FieldError,
  ValidationError,
  type Clause,
  type Detail,
  type ErrorType,
  type EvalContext,
  type Flag,
  type Op,
  type Reason,
  type Rollout,
  type Rule,
  type Target,
} from "./flag.js";
export { vigilMiddleware, withVigil } from "./middleware.js";
export { InvalidPatternError, UnsupportedPatternError, compileRE2, translateRE2 } from "./re2.js";
export { Snapshot, parseFlagsFile, readSnapshotDocument } from "./snapshot.js";
export {
  ATTR_ERROR_TYPE,
  ATTR_EVENT_NAME,
  ATTR_KEY,
  ATTR_REASON,
  ATTR_UNIT_BUCKET,
  ATTR_VARIANT,
  DURATION_BUCKETS,
  METRIC_EVENTS,
  METRIC_REQUESTS,
  METRIC_REQUEST_DURATION,
  SCOPE_NAME,
  SDK_VERSION,
  SPAN_ATTRIBUTE_PREFIX,
  SPAN_EVENT,
  Scope,
  errorType,
} from "./telemetry.js";
