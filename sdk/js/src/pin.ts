// Baggage pinning, as the Go SDK does it (sdk/pin.go): a service that
// evaluates a tracked flag in a request pins the variant in W3C baggage,
// and the services it calls serve that variant for the same unit instead of
// evaluating again, so that one request sees one variant end to end even
// while the flag changes. The member is
//
//	vigil.flag.<key>=<variant>;reason=<reason>;unit=<hex of the v1 hash of salt/unit>
//
// The hash, not the unit key, travels: unit keys are usually personal data.

import { baggageEntryMetadataFromString, propagation, type Baggage, type BaggageEntry, type Context } from "@opentelemetry/api";
import type { Reason } from "./flag.js";

/** Starts the baggage member that pins a flag: "vigil.flag.<key>". */
export const PIN_PREFIX = "vigil.flag.";

/** One flag's variant fixed for the rest of a request. */
export interface Pin {
  variant: string;
  /** the reason the pinning service evaluated */
  reason: Reason;
  /** the v1 hash of the flag's salt and the unit key */
  unit: number;
}

const PIN_REASONS: ReadonlySet<string> = new Set(["split", "targeting_match", "default", "disabled"]);

/** Reads a pin from a baggage entry; anything unexpected means no pin. */
export function parsePin(e: BaggageEntry | undefined): Pin | undefined {
  if (e === undefined || e.value === "") return undefined;
  let reason: Reason | undefined;
  let unit: number | undefined;
  for (const prop of (e.metadata?.toString() ?? "").split(";")) {
    const eq = prop.indexOf("=");
    if (eq < 0) continue;
    const k = prop.slice(0, eq).trim();
    const v = prop.slice(eq + 1).trim();
    if (k === "reason" && PIN_REASONS.has(v)) reason = v as Reason;
    // Go reads it with strconv.ParseUint(v, 16, 32).
    if (k === "unit" && /^[0-9a-fA-F]+$/.test(v) && v.replace(/^0+/, "").length <= 8) unit = parseInt(v, 16);
  }
  return reason !== undefined && unit !== undefined ? { variant: e.value, reason, unit } : undefined;
}

/** Adds pins to a baggage. */
export function withPins(b: Baggage, pins: ReadonlyMap<string, Pin>): Baggage {
  for (const [key, p] of pins) {
    b = b.setEntry(PIN_PREFIX + key, {
      value: p.variant,
      metadata: baggageEntryMetadataFromString(`reason=${p.reason};unit=${p.unit.toString(16)}`),
    });
  }
  return b;
}

// The key under which OpenTelemetry keeps baggage in a context is not
// exported; a probe context learns it from the one lookup getBaggage makes.
let baggageKey: symbol | undefined;
const probe: Context = {
  getValue(key: symbol) {
    baggageKey ??= key;
    return undefined;
  },
  setValue: () => probe,
  deleteValue: () => probe,
};
propagation.getBaggage(probe);

/**
 * A context that answers the baggage key with its parent's baggage plus
 * the pins of a scope, so that whatever propagates baggage from the active
 * context (HTTP instrumentation, propagation.inject) carries the pins made
 * during the request without the handler passing a new context around.
 */
export class PinningContext implements Context {
  constructor(
    private readonly parent: Context,
    private readonly pins: () => ReadonlyMap<string, Pin>,
  ) {}

  getValue(key: symbol): unknown {
    const v = this.parent.getValue(key);
    if (key !== baggageKey) return v;
    const pins = this.pins();
    if (pins.size === 0) return v;
    return withPins((v as Baggage | undefined) ?? propagation.createBaggage(), pins);
  }

  setValue(key: symbol, value: unknown): Context {
    return new PinningContext(this.parent.setValue(key, value), this.pins);
  }

  deleteValue(key: symbol): Context {
    return new PinningContext(this.parent.deleteValue(key), this.pins);
  }
}
