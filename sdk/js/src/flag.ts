// The flag model (sdk/flag in Go), its validation, and in-memory
// evaluation with the same order, operators, reasons and error types as the
// Go reference implementation (sdk/flag/eval.go).

import { hashFrom, bucketOf, millipercent, saltPrefix, type HashState } from "./bucket.js";
import { goFormatFloatF, goParseFloat, goSprint, goTrimSpace } from "./gocompat.js";
import { compileRE2, InvalidPatternError } from "./re2.js";
import { compareVersions, parseVersion, type Version } from "./semver.js";

/** A clause operator. */
export type Op =
  | "in"
  | "not_in"
  | "starts_with"
  | "ends_with"
  | "contains"
  | "matches"
  | "lt"
  | "lte"
  | "gt"
  | "gte"
  | "semver_lt"
  | "semver_gte";


/** Compares one attribute of the evaluation context with values. */
export interface Clause {
  attribute: string;
  op: Op;
  /** Operands, kept as strings; a flags file may write numbers and booleans. */
  values: string[];
}

/** Serves variant to the listed units, before any rule or rollout. */
export interface Target {
  variant: string;
  units: string[];
}

/** Serves variant when every clause matches. */
export interface Rule {
  variant: string;
  when: Clause[];
}

/** The treatment share of the units no target or rule decided. */
export interface Rollout {
  /** 0 to 100, at most 3 decimals. */
  percent: number;
  /** Drives an automated rollout on the controller; SDKs ignore it. */
  plan?: unknown;
}

/** One feature flag, as in a flags file and on the wire. */
export interface Flag {
  key: string;
  description?: string;
  /** variant name to value, any JSON value */
  variants: Record<string, unknown>;
  control: string;
  treatment?: string;
  enabled: boolean;
  salt?: string;
  targets?: Target[];
  rules?: Rule[];
  rollout?: Rollout;
  /** set by the controller; grows on every change */
  version?: number;
  /** set by the controller on flags under an active rollout */
  tracked?: boolean;
}

/** Why an evaluation returned its variant (OpenTelemetry's feature_flag.result.reason). */
export type Reason = "disabled" | "targeting_match" | "split" | "default" | "error" | "pinned";

/** What went wrong when the reason is "error" (OpenFeature's error codes in lower case). */
export type ErrorType = "flag_not_found" | "targeting_key_missing" | "type_mismatch" | "provider_not_ready" | "general";

/** What a flag is evaluated for: a unit key and attributes rules can test. */
export interface EvalContext {
  /** the targeting key: a user, account, device... */
  key?: string;
  /** strings, numbers and booleans; null or absent never matches */
  attributes?: Readonly<Record<string, unknown>>;
}

/** The full result of one evaluation. */
export interface Detail {
  key: string;
  /** the variant's value as decoded from JSON; frozen, shared by callers */
  value: unknown;
  /** the variant's name, "" when the caller's default is served */
  variant: string;
  reason: Reason;
  /** set when reason is "error" */
  errorType: ErrorType | undefined;
  /** the flag's version, 0 when unknown */
  version: number;
  /** the flag is under a rollout whose cohorts are measured */
  tracked: boolean;
}

/** One invalid field of one flag. */
export class FieldError extends Error {
  override name = "FieldError";
  constructor(
    readonly flag: string,
    readonly field: string,
    readonly detail: string,
  ) {
    super(`flag ${flag}: ${field}: ${detail}`);
  }
}

/** Every problem found in a set of flags. */
export class ValidationError extends Error {
  override name = "ValidationError";
  constructor(readonly errors: FieldError[]) {
    super(errors.map((e) => e.message).join("\n"));
  }
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A variant's name and value. */
export interface Variant {
  readonly name: string;
  readonly value: unknown;
}

const NO_VARIANT: Variant = { name: "", value: undefined };

// A clause's result: matched, not matched, or not decidable here (a
// pattern outside the RE2 subset this SDK runs).
const NO = 0;
const YES = 1;
const UNDECIDABLE = 2;

interface CompiledClause {
  readonly attr: string;
  readonly op: Op;
  readonly strs: readonly string[];
  readonly set: ReadonlySet<string> | null;
  readonly nums: readonly number[];
  readonly res: readonly RegExp[];
  /** why the pattern cannot run here, when it cannot */
  readonly unsupported: string | null;
  readonly vers: readonly Version[];
}

interface CompiledRule {
  readonly variant: Variant;
  readonly clauses: readonly CompiledClause[];
}

/** A validated flag ready for evaluation. */
export interface CompiledFlag {
  readonly def: Flag;
  readonly prefix: HashState;
  readonly control: Variant;
  readonly treatment: Variant;
  readonly targets: ReadonlyMap<string, Variant> | null;
  readonly rules: readonly CompiledRule[];
  /** treatment share in thousandths of a percent */
  readonly threshold: number;
  readonly rollout: boolean;
  /** patterns this SDK cannot run, reported once when the flag loads */
  readonly warnings: readonly string[];
  /** every variant by name, for serving a pinned one */
  readonly values: ReadonlyMap<string, Variant>;
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

// isJSON reports whether v survives a JSON round trip: finite numbers,
// strings, booleans, null, and lists and plain objects of them.
function isJSON(v: unknown): boolean {
  switch (typeof v) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(v);
    case "object":
      if (v === null) return true;
      if (Array.isArray(v)) return v.every(isJSON);
      if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null) return false;
      return Object.values(v).every(isJSON);
  }
  return false;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

const FLAG_FIELDS = new Set([
  "key", "description", "variants", "control", "treatment", "enabled", "salt", "targets", "rules", "rollout", "version", "tracked",
]);
const TARGET_FIELDS = new Set(["variant", "units"]);
const RULE_FIELDS = new Set(["variant", "when"]);
const CLAUSE_FIELDS = new Set(["attribute", "op", "values"]);
const ROLLOUT_FIELDS = new Set(["percent", "plan"]);

/**
 * Reads an untyped flag (decoded JSON or YAML) into a Flag, converting
 * clause values written as numbers or booleans to strings. With strict set,
 * unknown fields are errors, as they are in Go's flags files; on the wire
 * they are ignored so that an older SDK keeps working. Problems are
 * appended to errs.
 */
export function readFlag(raw: unknown, index: number, strict: boolean, errs: FieldError[]): Flag | undefined {
  const name = isRecord(raw) && typeof raw.key === "string" && raw.key !== "" ? raw.key : `#${index}`;
  const add = (field: string, msg: string) => errs.push(new FieldError(name, field, msg));
  if (!isRecord(raw)) {
    add("", "a flag must be an object");
    return undefined;
  }
  const before = errs.length;
  const unknown = (o: Record<string, unknown>, known: Set<string>, path: string) => {
    if (!strict) return;
    for (const k of Object.keys(o)) if (!known.has(k)) add(path === "" ? k : `${path}.${k}`, "unknown field");
  };
  unknown(raw, FLAG_FIELDS, "");
  const str = (v: unknown, field: string): string => {
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") {
      add(field, `want a string, got ${JSON.stringify(v)}`);
      return "";
    }
    return v;
  };
  const f: Flag = {
    key: str(raw.key, "key"),
    variants: {},
    control: str(raw.control, "control"),
    enabled: false,
  };
  if (raw.description !== undefined) f.description = str(raw.description, "description");
  if (raw.treatment !== undefined && raw.treatment !== null) f.treatment = str(raw.treatment, "treatment");
  if (raw.salt !== undefined && raw.salt !== null) f.salt = str(raw.salt, "salt");
  if (raw.enabled !== undefined && raw.enabled !== null) {
    if (typeof raw.enabled !== "boolean") add("enabled", `want true or false, got ${JSON.stringify(raw.enabled)}`);
    else f.enabled = raw.enabled;
  }
  if (raw.tracked !== undefined && raw.tracked !== null) {
    if (typeof raw.tracked !== "boolean") add("tracked", `want true or false, got ${JSON.stringify(raw.tracked)}`);
    else f.tracked = raw.tracked;
  }
  if (raw.version !== undefined && raw.version !== null) {
    if (typeof raw.version !== "number" || !Number.isInteger(raw.version)) add("version", "want an integer");
    else f.version = raw.version;
  }
  if (raw.variants !== undefined && raw.variants !== null) {
    if (!isRecord(raw.variants)) add("variants", "want an object of variant names to values");
    else f.variants = raw.variants;
  }
  if (raw.targets !== undefined && raw.targets !== null) {
    if (!Array.isArray(raw.targets)) add("targets", "want a list");
    else {
      f.targets = raw.targets.map((t: unknown, i: number) => {
        const field = `targets[${i}]`;
        if (!isRecord(t)) {
          add(field, "want an object");
          return { variant: "", units: [] };
        }
        unknown(t, TARGET_FIELDS, field);
        const units: string[] = [];
        if (t.units !== undefined && t.units !== null) {
          if (!Array.isArray(t.units)) add(`${field}.units`, "want a list of strings");
          else
            t.units.forEach((u: unknown, j: number) => {
              if (typeof u === "string") units.push(u);
              else add(`${field}.units[${j}]`, `want a string, got ${JSON.stringify(u)}`);
            });
        }
        return { variant: str(t.variant, `${field}.variant`), units };
      });
    }
  }
  if (raw.rules !== undefined && raw.rules !== null) {
    if (!Array.isArray(raw.rules)) add("rules", "want a list");
    else {
      f.rules = raw.rules.map((r: unknown, i: number) => {
        const field = `rules[${i}]`;
        if (!isRecord(r)) {
          add(field, "want an object");
          return { variant: "", when: [] };
        }
        unknown(r, RULE_FIELDS, field);
        const when: Clause[] = [];
        if (r.when !== undefined && r.when !== null) {
          if (!Array.isArray(r.when)) add(`${field}.when`, "want a list");
          else
            r.when.forEach((c: unknown, j: number) => {
              const cf = `${field}.when[${j}]`;
              if (!isRecord(c)) {
                add(cf, "want an object");
                return;
              }
              unknown(c, CLAUSE_FIELDS, cf);
              const values: string[] = [];
              if (c.values !== undefined && c.values !== null) {
                if (!Array.isArray(c.values)) add(`${cf}.values`, "values must be a list");
                else
                  c.values.forEach((v: unknown, k: number) => {
                    if (typeof v === "string") values.push(v);
                    else if (typeof v === "boolean") values.push(v ? "true" : "false");
                    else if (typeof v === "number" && Number.isFinite(v)) values.push(String(v));
                    else add(`${cf}.values[${k}]`, `want a string, number or boolean, got ${JSON.stringify(v)}`);
                  });
              }
              when.push({ attribute: str(c.attribute, `${cf}.attribute`), op: str(c.op, `${cf}.op`) as Op, values });
            });
        }
        return { variant: str(r.variant, `${field}.variant`), when };
      });
    }
  }
  if (raw.rollout !== undefined && raw.rollout !== null) {
    if (!isRecord(raw.rollout)) add("rollout", "want an object");
    else {
      unknown(raw.rollout, ROLLOUT_FIELDS, "rollout");
      const p = raw.rollout.percent ?? 0;
      if (typeof p !== "number") add("rollout.percent", `want a number, got ${JSON.stringify(p)}`);
      f.rollout = { percent: typeof p === "number" ? p : NaN };
      if (raw.rollout.plan !== undefined) f.rollout.plan = raw.rollout.plan;
    }
  }
  return errs.length === before ? f : undefined;
}

/** Checks one flag and returns every problem found. */
export function checkFlag(f: Flag, name = f.key || "#0"): FieldError[] {
  const errs: FieldError[] = [];
  const add = (field: string, msg: string) => errs.push(new FieldError(name, field, msg));
  if (!KEY.test(f.key)) {
    add("key", `${JSON.stringify(f.key)} must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  const names = Object.keys(f.variants);
  if (names.length === 0) add("variants", "at least one variant is required");
  for (const n of names) {
    if (n === "") add("variants", "a variant name is empty");
    if (f.variants[n] === undefined) add(`variants.${n}`, "value is missing");
    else if (!isJSON(f.variants[n])) add(`variants.${n}`, "value is not representable in JSON (a non-finite number or a non-JSON object)");
  }
  const variant = (field: string, v: string | undefined) => {
    if (!v) add(field, "is required");
    else if (!Object.prototype.hasOwnProperty.call(f.variants, v)) add(field, `unknown variant ${JSON.stringify(v)}`);
  };
  variant("control", f.control);
  if (f.treatment || f.rollout) variant("treatment", f.treatment);
  (f.targets ?? []).forEach((t, i) => {
    variant(`targets[${i}].variant`, t.variant);
    if (t.units.length === 0) add(`targets[${i}].units`, "at least one unit is required");
  });
  (f.rules ?? []).forEach((r, i) => {
    variant(`rules[${i}].variant`, r.variant);
    r.when.forEach((c, j) => {
      try {
        compileClause(c);
      } catch (e) {
        add(`rules[${i}].when[${j}]`, (e as Error).message);
      }
    });
  });
  if (f.rollout) {
    try {
      millipercent(f.rollout.percent);
    } catch (e) {
      add("rollout.percent", (e as Error).message);
    }
  }
  return errs;
}

/** Checks a set of flags as a unit, including duplicate keys. */
export function validate(flags: readonly Flag[]): FieldError[] {
  const errs: FieldError[] = [];
  const seen = new Map<string, number>();
  flags.forEach((f, i) => {
    const name = f.key || `#${i}`;
    const j = seen.get(f.key);
    if (j !== undefined && f.key !== "") errs.push(new FieldError(name, "key", `duplicate key, also used by flag #${j}`));
    seen.set(f.key, i);
    errs.push(...checkFlag(f, name));
  });
  return errs;
}

function compileClause(c: Clause): CompiledClause {
  if (!c.attribute) throw new Error("attribute is required");
  if (c.values.length === 0) throw new Error("values: at least one value is required");
  let set: Set<string> | null = null;
  const nums: number[] = [];
  const res: RegExp[] = [];
  const vers: Version[] = [];
  let unsupported: string | null = null;
  switch (c.op as string) {
    case "in":
    case "not_in":
      if (c.values.length > 8) set = new Set(c.values);
      break;
    case "starts_with":
    case "ends_with":
    case "contains":
      break;
    case "matches":
      c.values.forEach((v, i) => {
        try {
          res.push(compileRE2(v));
        } catch (e) {
          if (e instanceof InvalidPatternError) throw new Error(`values[${i}]: bad regular expression: ${e.message}`);
          unsupported ??= `values[${i}]: pattern ${JSON.stringify(v)} is outside the RE2 subset this SDK runs: ${(e as Error).message}`;
        }
      });
      break;
    case "lt":
    case "lte":
    case "gt":
    case "gte":
      c.values.forEach((v, i) => {
        const n = goParseFloat(v);
        if (n === undefined || Number.isNaN(n)) throw new Error(`values[${i}]: ${JSON.stringify(v)} is not a number`);
        nums.push(n);
      });
      break;
    case "semver_lt":
    case "semver_gte":
      c.values.forEach((v, i) => {
        const sv = parseVersion(v);
        if (sv === undefined) throw new Error(`values[${i}]: ${JSON.stringify(v)} is not a semantic version`);
        vers.push(sv);
      });
      break;
    case "":
      throw new Error("op is required");
    default:
      throw new Error(
        `unknown op ${JSON.stringify(c.op)} (want in, not_in, starts_with, ends_with, contains, matches, lt, lte, gt, gte, semver_lt or semver_gte)`,
      );
  }
  return { attr: c.attribute, op: c.op, strs: c.values, set, nums, res, unsupported, vers };
}

/** Validates and compiles one flag, or throws a ValidationError. */
export function compileFlag(f: Flag): CompiledFlag {
  const errs = checkFlag(f);
  if (errs.length > 0) throw new ValidationError(errs);
  const values = new Map<string, Variant>();
  for (const [name, v] of Object.entries(f.variants)) values.set(name, Object.freeze({ name, value: deepFreeze(v) }));
  const get = (n: string | undefined) => (n ? values.get(n) ?? NO_VARIANT : NO_VARIANT);
  let targets: Map<string, Variant> | null = null;
  for (const t of f.targets ?? []) {
    for (const u of t.units) {
      targets ??= new Map();
      if (!targets.has(u)) targets.set(u, get(t.variant));
    }
  }
  const warnings: string[] = [];
  const rules = (f.rules ?? []).map((r, i) => ({
    variant: get(r.variant),
    clauses: r.when.map((c, j) => {
      const cc = compileClause(c);
      if (cc.unsupported !== null) warnings.push(`flag ${f.key}: rules[${i}].when[${j}]: ${cc.unsupported}`);
      return cc;
    }),
  }));
  return {
    def: f,
    prefix: saltPrefix(f.salt || f.key),
    control: get(f.control),
    treatment: get(f.treatment),
    targets,
    rules,
    threshold: f.rollout ? millipercent(f.rollout.percent) : 0,
    rollout: f.rollout !== undefined,
    warnings,
    values,
  };
}

function detail(c: CompiledFlag, v: Variant, reason: Reason, errorType?: ErrorType): Detail {
  return {
    key: c.def.key,
    value: v.value,
    variant: v.name,
    reason,
    errorType,
    version: c.def.version ?? 0,
    tracked: c.def.tracked === true,
  };
}

/** Evaluates a compiled flag for ctx, in the order of docs/bucketing.md. */
export function evaluateFlag(c: CompiledFlag, ctx: EvalContext): Detail {
  if (!c.def.enabled) return detail(c, c.control, "disabled");
  const unit = ctx.key ?? "";
  if (unit !== "" && c.targets !== null) {
    const v = c.targets.get(unit);
    if (v !== undefined) return detail(c, v, "targeting_match");
  }
  if (c.rules.length > 0) {
    const attrs = ctx.attributes;
    for (const r of c.rules) {
      const m = ruleMatches(r, attrs);
      if (m === YES) return detail(c, r.variant, "targeting_match");
      if (m === UNDECIDABLE) return detail(c, NO_VARIANT, "error", "general");
    }
  }
  if (!c.rollout) return detail(c, c.control, "default");
  if (unit === "") return detail(c, c.control, "error", "targeting_key_missing");
  if (bucketOf(hashFrom(c.prefix, unit)) < c.threshold) return detail(c, c.treatment, "split");
  return detail(c, c.control, "split");
}

/** The detail of a flag the snapshot does not hold. */
export function notFound(key: string): Detail {
  return { key, value: undefined, variant: "", reason: "error", errorType: "flag_not_found", version: 0, tracked: false };
}

const hasOwn = Object.prototype.hasOwnProperty;

function ruleMatches(r: CompiledRule, attrs: Readonly<Record<string, unknown>> | undefined): number {
  for (const c of r.clauses) {
    if (attrs === undefined || !hasOwn.call(attrs, c.attr)) return NO;
    const v = attrs[c.attr];
    if (v === undefined || v === null) return NO;
    const m = clauseMatches(c, v);
    if (m !== YES) return m;
  }
  return YES;
}

function clauseMatches(c: CompiledClause, v: unknown): number {
  switch (c.op) {
    case "in":
    case "not_in": {
      const s = attrString(v);
      const found = c.set !== null ? c.set.has(s) : c.strs.includes(s);
      return found === (c.op === "in") ? YES : NO;
    }
    case "starts_with":
    case "ends_with":
    case "contains": {
      const s = attrString(v);
      for (const w of c.strs) {
        if (
          (c.op === "starts_with" && s.startsWith(w)) ||
          (c.op === "ends_with" && s.endsWith(w)) ||
          (c.op === "contains" && s.includes(w))
        ) {
          return YES;
        }
      }
      return NO;
    }
    case "matches": {
      const s = attrString(v);
      for (const re of c.res) if (re.test(s)) return YES;
      // A pattern this SDK cannot run might have matched: say so rather
      // than guess.
      return c.unsupported !== null ? UNDECIDABLE : NO;
    }
    case "lt":
    case "lte":
    case "gt":
    case "gte": {
      const n = attrNumber(v);
      if (n === undefined) return NO;
      for (const w of c.nums) {
        if (
          (c.op === "lt" && n < w) ||
          (c.op === "lte" && n <= w) ||
          (c.op === "gt" && n > w) ||
          (c.op === "gte" && n >= w)
        ) {
          return YES;
        }
      }
      return NO;
    }
    case "semver_lt":
    case "semver_gte": {
      if (typeof v !== "string") return NO;
      const sv = parseVersion(v);
      if (sv === undefined) return NO;
      for (const w of c.vers) {
        const cmp = compareVersions(sv, w);
        if ((c.op === "semver_lt" && cmp < 0) || (c.op === "semver_gte" && cmp >= 0)) return YES;
      }
      return NO;
    }
  }
  return NO;
}

/**
 * Renders an attribute for the string operators as Go does: strings as
 * they are, booleans and numbers in their JSON spelling (1e21 is
 * "1000000000000000000000"), lists and objects as fmt.Sprint would.
 */
export function attrString(v: unknown): string {
  switch (typeof v) {
    case "string":
      return v;
    case "boolean":
      return v ? "true" : "false";
    case "number":
      return goFormatFloatF(v);
    case "bigint":
      return goFormatFloatF(Number(v));
  }
  return goSprint(v);
}

/** Reads an attribute as a number; strings are parsed as Go's ParseFloat does. */
export function attrNumber(v: unknown): number | undefined {
  switch (typeof v) {
    case "number":
      return v;
    case "bigint":
      return Number(v);
    case "string":
      return goParseFloat(goTrimSpace(v));
  }
  return undefined;
}
