// An immutable set of compiled flags, and the documents that carry flags:
// the controller's snapshot (docs/sdk-protocol.md) and flags files.

import { parse as parseYAML, type ScalarTag } from "yaml";
import {
  compileFlag,
  evaluateFlag,
  FieldError,
  notFound,
  readFlag,
  validate,
  ValidationError,
  type CompiledFlag,
  type Detail,
  type EvalContext,
  type Flag,
} from "./flag.js";

/**
 * An immutable, compiled set of flags. Evaluating takes no lock and does
 * no I/O; updates build a new Snapshot.
 */
export class Snapshot {
  private constructor(
    /** the store revision the snapshot reflects */
    readonly revision: number,
    private readonly compiled: ReadonlyMap<string, CompiledFlag>,
  ) {}

  /**
   * Validates and compiles flags as a unit: any problem throws a
   * ValidationError naming every bad field, as Go's flag.NewSnapshot does.
   */
  static of(revision: number, flags: readonly Flag[]): Snapshot {
    const errs = validate(flags);
    if (errs.length > 0) throw new ValidationError(errs);
    const m = new Map<string, CompiledFlag>();
    for (const f of flags) m.set(f.key, compileFlag(f));
    return new Snapshot(revision, m);
  }

  /**
   * Builds a snapshot flag by flag: a flag that does not validate keeps
   * its definition in prev, if any, so that one bad flag does not discard
   * the whole update. Every such flag is reported in errors.
   */
  static salvage(revision: number, flags: readonly Flag[], prev?: Snapshot): { snapshot: Snapshot; errors: FieldError[] } {
    const m = new Map<string, CompiledFlag>();
    const errors: FieldError[] = [];
    for (const f of flags) {
      try {
        m.set(f.key, compileFlag(f));
      } catch (e) {
        if (!(e instanceof ValidationError)) throw e;
        errors.push(...e.errors);
        const old = prev?.compiled.get(f.key);
        if (old !== undefined) m.set(f.key, old);
      }
    }
    return { snapshot: new Snapshot(revision, m), errors };
  }

  /** The number of flags. */
  get size(): number {
    return this.compiled.size;
  }

  /** The definition of key, if the snapshot holds it. */
  flag(key: string): Flag | undefined {
    return this.compiled.get(key)?.def;
  }

  /** Every definition, sorted by key. */
  flags(): Flag[] {
    return [...this.compiled.keys()].sort().map((k) => this.compiled.get(k)!.def);
  }

  /** @internal The compiled flag, for pinning. */
  compiledFlag(key: string): CompiledFlag | undefined {
    return this.compiled.get(key);
  }

  /** Problems with patterns this SDK cannot run, one line per clause. */
  warnings(): string[] {
    return [...this.compiled.values()].flatMap((c) => c.warnings);
  }

  /**
   * Returns a copy with f added or replaced, at the larger of the two
   * revisions, or throws a ValidationError and leaves this one as it is.
   */
  put(f: Flag): Snapshot {
    return this.update(f.version ?? 0, [f], []);
  }

  /** Returns a copy without key, at revision max(this, version). */
  delete(key: string, version: number): Snapshot {
    return this.update(version, [], [key]);
  }

  /**
   * Returns a copy with puts added or replaced and deletes removed, at
   * revision max(this, revision): one copy however many flags change, so
   * that a batch of n changes to n flags costs O(n), not O(n²). A key in
   * both lists is deleted; callers pass each key once. When a put does not
   * validate it throws a ValidationError naming every bad field and leaves
   * this snapshot as it is.
   */
  update(revision: number, puts: readonly Flag[], deletes: readonly string[]): Snapshot {
    const compiled: CompiledFlag[] = [];
    const errs: FieldError[] = [];
    for (const f of puts) {
      try {
        compiled.push(compileFlag(f));
      } catch (e) {
        if (!(e instanceof ValidationError)) throw e;
        errs.push(...e.errors);
      }
    }
    if (errs.length > 0) throw new ValidationError(errs);
    const m = new Map(this.compiled);
    for (const c of compiled) m.set(c.def.key, c);
    for (const k of deletes) m.delete(k);
    return new Snapshot(Math.max(this.revision, revision), m);
  }

  /**
   * Evaluates key for ctx. An unknown flag yields reason "error" with
   * "flag_not_found" and no value: the caller serves its default.
   */
  evaluate(key: string, ctx: EvalContext): Detail {
    const c = this.compiled.get(key);
    return c === undefined ? notFound(key) : evaluateFlag(c, ctx);
  }
}

/** The controller's snapshot document, read leniently (unknown fields are ignored). */
export interface SnapshotDocument {
  revision: number;
  flags: Flag[];
  /** flags that could not be read at all, with why */
  errors: FieldError[];
}

/** Reads a snapshot document already decoded from JSON. */
export function readSnapshotDocument(doc: unknown): SnapshotDocument {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error("snapshot: want a JSON object with revision and flags");
  }
  const d = doc as Record<string, unknown>;
  const revision = d.revision ?? 0;
  if (typeof revision !== "number" || !Number.isInteger(revision)) throw new Error("snapshot: revision: want an integer");
  const raw = d.flags ?? [];
  if (!Array.isArray(raw)) throw new Error("snapshot: flags: want a list");
  const errors: FieldError[] = [];
  const flags: Flag[] = [];
  raw.forEach((r, i) => {
    const f = readFlag(r, i, false, errors);
    if (f !== undefined) flags.push(f);
  });
  return { revision, flags, errors };
}

// Go reads flags files with gopkg.in/yaml.v3, which keeps some YAML 1.1
// readings of plain scalars that YAML 1.2 (this parser) does not: 0777 is
// octal, 1_000 is a number, 0b101 is binary, 2026-01-01 is a timestamp. Such
// scalars would mean different things to the two SDKs, so they are refused
// here with a pointer to the fix, instead of being read one way.
const goAmbiguous: ScalarTag = {
  tag: "tag:vigil.dev,2026:go-ambiguous",
  default: true,
  test: /^(?:[-+]?0+[1-7][0-7]+|[-+]?0[bB][01_]+|[-+]?0[xXoO][0-9a-fA-F_]*_[0-9a-fA-F_]*|[-+]?[0-9.][0-9._]*_[0-9._]*(?:[eE][-+]?[0-9_]+)?|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?)$/,
  resolve(value, onError) {
    onError(`the plain scalar ${value} reads differently in Go's YAML parser: quote it, or write the number in decimal without "_"`);
    return value;
  },
};

/**
 * Parses and validates a flags file, YAML or JSON, as Go's flag.Parse
 * does: YAML 1.2 (so off and on are strings), unknown fields are errors,
 * and any problem rejects the whole file.
 */
export function parseFlagsFile(text: string, name = "flags"): Flag[] {
  let doc: unknown;
  try {
    doc = parseYAML(text, { version: "1.2", uniqueKeys: true, merge: true, customTags: (tags) => [goAmbiguous, ...tags] });
  } catch (e) {
    throw new Error(`parse ${name}: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) throw new Error(`parse ${name}: document is empty`);
  if (typeof doc !== "object" || Array.isArray(doc)) throw new Error(`parse ${name}: want an object with a flags list`);
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (k !== "flags") throw new Error(`parse ${name}: unknown field ${JSON.stringify(k)}`);
  const raw = d.flags ?? [];
  if (!Array.isArray(raw)) throw new Error(`parse ${name}: flags: want a list`);
  const errors: FieldError[] = [];
  const flags: Flag[] = [];
  raw.forEach((r, i) => {
    const f = readFlag(r, i, true, errors);
    if (f !== undefined) flags.push(f);
  });
  errors.push(...validate(flags));
  if (errors.length > 0) throw new ValidationError(errors);
  return flags;
}
