// An OpenFeature in-process provider for @openfeature/server-sdk: flags are
// evaluated from the client's memory, and evaluations record the same span
// events and cohort metrics as the client's own methods. Track counts
// business events per cohort (feature_flag.events). Events: READY,
// CONFIGURATION_CHANGED with the changed keys, STALE while the controller is
// unreachable, ERROR when it refuses the token.

import {
  ErrorCode,
  OpenFeatureEventEmitter,
  ProviderEvents,
  StandardResolutionReasons,
  type EvaluationContext,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
  type TrackingEventDetails,
} from "@openfeature/server-sdk";
import { AuthError, Client, type ClientConfig } from "./client.js";
import type { Detail, EvalContext } from "./flag.js";

const REASONS: Record<string, string> = {
  disabled: StandardResolutionReasons.DISABLED,
  targeting_match: StandardResolutionReasons.TARGETING_MATCH,
  split: StandardResolutionReasons.SPLIT,
  default: StandardResolutionReasons.DEFAULT,
  error: StandardResolutionReasons.ERROR,
  pinned: "PINNED",
};

const ERRORS: Record<string, ErrorCode> = {
  flag_not_found: ErrorCode.FLAG_NOT_FOUND,
  targeting_key_missing: ErrorCode.TARGETING_KEY_MISSING,
  type_mismatch: ErrorCode.TYPE_MISMATCH,
  provider_not_ready: ErrorCode.PROVIDER_NOT_READY,
  general: ErrorCode.GENERAL,
};

/** Converts an OpenFeature context: targetingKey is the unit, the rest are attributes. */
export function toEvalContext(ctx: EvaluationContext): EvalContext {
  const attributes: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ctx)) {
    if (k === "targetingKey") continue;
    attributes[k] = v instanceof Date ? v.toISOString() : v;
  }
  return { key: typeof ctx.targetingKey === "string" ? ctx.targetingKey : "", attributes };
}

/** The OpenFeature provider. Pass a Client it shares, or a config for a client it owns. */
export class VigilProvider implements Provider {
  readonly metadata = { name: "vigil" } as const;
  readonly runsOn = "server" as const;
  readonly events = new OpenFeatureEventEmitter();
  /** The client the provider evaluates with. */
  readonly client: Client;
  private readonly owned: boolean;
  private initialized = false;

  constructor(client: Client | ClientConfig) {
    this.owned = !(client instanceof Client);
    this.client = client instanceof Client ? client : new Client(client);
    this.client.on("ready", () => {
      // The first READY is the SDK's own, after initialize resolves.
      if (this.initialized) this.events.emit(ProviderEvents.Ready);
    });
    this.client.on("change", (keys) => this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: keys }));
    this.client.on("stale", (err) => this.events.emit(ProviderEvents.Stale, { message: err.message }));
    // Only a refused token is a provider error: a bad flag or event is
    // logged by the client, which keeps serving the flags it has.
    this.client.on("error", (err) => {
      if (err instanceof AuthError) this.events.emit(ProviderEvents.Error, { message: err.message });
    });
  }

  /**
   * Waits for the client's first data. Without data and without a cached
   * snapshot it fails, and OpenFeature puts the provider in the ERROR state
   * until a READY event.
   */
  async initialize(): Promise<void> {
    const ok = await this.client.ready();
    this.initialized = true;
    if (!ok && this.client.snapshot === null) throw new Error("vigil: no flags yet: the controller has not answered");
  }

  async onClose(): Promise<void> {
    if (this.owned) await this.client.close();
  }

  private resolve<T>(key: string, def: T, ctx: EvaluationContext, check: (v: unknown) => boolean): ResolutionDetails<T> {
    const d: Detail = this.client.detail(key, toEvalContext(ctx), check);
    if (d.variant === "") {
      return {
        value: def,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ERRORS[d.errorType ?? "general"] ?? ErrorCode.GENERAL,
        errorMessage: `${key}: ${d.errorType ?? "general"}`,
      };
    }
    const out: ResolutionDetails<T> = {
      value: d.value as T,
      variant: d.variant,
      reason: REASONS[d.reason] ?? d.reason,
      flagMetadata: { version: d.version, tracked: d.tracked },
    };
    if (d.errorType !== undefined) {
      out.errorCode = ERRORS[d.errorType] ?? ErrorCode.GENERAL;
      out.errorMessage = `${key}: ${d.errorType}`;
    }
    return out;
  }

  async resolveBooleanEvaluation(key: string, def: boolean, ctx: EvaluationContext): Promise<ResolutionDetails<boolean>> {
    return this.resolve(key, def, ctx, (v) => typeof v === "boolean");
  }

  async resolveStringEvaluation(key: string, def: string, ctx: EvaluationContext): Promise<ResolutionDetails<string>> {
    return this.resolve(key, def, ctx, (v) => typeof v === "string");
  }

  async resolveNumberEvaluation(key: string, def: number, ctx: EvaluationContext): Promise<ResolutionDetails<number>> {
    return this.resolve(key, def, ctx, (v) => typeof v === "number");
  }

  /**
   * Evaluates a flag with any JSON variants, null and scalars included: an
   * OpenFeature JsonValue may be any of them, and the Go provider and both
   * clients' JSON methods accept them all, so a service gets the same
   * answer in either language.
   */
  async resolveObjectEvaluation<T extends JsonValue>(key: string, def: T, ctx: EvaluationContext): Promise<ResolutionDetails<T>> {
    return this.resolve(key, def, ctx, () => true);
  }

  /**
   * Counts a business event in the cohort of every tracked flag evaluated
   * in the current scope (the request, with the middleware).
   */
  track(name: string, _ctx?: EvaluationContext, _details?: TrackingEventDetails): void {
    this.client.track(name);
  }
}
