// The client: keeps an in-memory snapshot of the flags, fed by the
// controller's stream (polling the snapshot with ETags while the stream is
// down), by a flags file, or by flags given in code; and evaluates from
// memory with OpenTelemetry span events and cohort metrics.

import { EventEmitter } from "node:events";
import { readFileSync, statSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { context, propagation, type MeterProvider } from "@opentelemetry/api";
import { hashFrom } from "./bucket.js";
import { checkFlag, type Detail, type EvalContext, type Flag, type Reason } from "./flag.js";
import { parsePin, PIN_PREFIX, type Pin } from "./pin.js";
import { parseFlagsFile, readSnapshotDocument, Snapshot } from "./snapshot.js";
import { SSEParser } from "./sse.js";
import { Scope, Telemetry } from "./telemetry.js";

/** Receives delivery problems. console fits. */
export interface Logger {
  warn(message: string): void;
  error(message: string): void;
}

/** Configures a Client. One of serverURL, flagsFile or flags is required. */
export interface ClientConfig {
  /** the controller's base URL, such as "http://vigil:8080" */
  serverURL?: string;
  /** sent as "Authorization: Bearer <token>"; an sdk token */
  token?: string;
  /** Offline mode: flags come from this YAML or JSON flags file. */
  flagsFile?: string;
  /** When positive, rereads flagsFile this often (ms) and swaps in valid changes. */
  fileReloadInterval?: number;
  /** Offline mode with flags given in code (tests, embedded defaults). */
  flags?: Flag[];
  /** Where to keep a copy of the last snapshot, served on a cold start while the controller is unreachable. */
  cacheFile?: string;
  /** How long ready() waits for the first data by default, in ms. Default 5000. */
  initTimeout?: number;
  /** How often the snapshot is polled while the stream is down, in ms. Default 10000. */
  pollInterval?: number;
  /** Bounds one snapshot request, in ms. Default 10000. */
  pollTimeout?: number;
  /** How long the stream may stay silent before it is reopened, in ms. Default 45000 (the controller pings every 15 s). */
  streamIdleTimeout?: number;
  /** Bounds of the jittered exponential backoff between stream reconnections, in ms. Default 500 and 30000. */
  backoffMin?: number;
  backoffMax?: number;
  /** Records the cohort metrics; the global MeterProvider when absent. */
  meterProvider?: MeterProvider;
  /** Adds the unit key (feature_flag.context.id) to span events. Off by default: unit keys are usually personal data. */
  recordUnitKey?: boolean;
  /**
   * Turns off baggage pinning: the client neither serves variants pinned
   * upstream (W3C baggage "vigil.flag.<key>", as the Go SDK writes them) nor
   * pins its own for the services it calls.
   */
  disablePinning?: boolean;
  /** Receives delivery problems; console when absent. */
  logger?: Logger;
  /** Makes the HTTP requests; the global fetch when absent. */
  fetch?: typeof fetch;
}

/** Events a Client emits. */
export interface ClientEvents {
  /** the first data arrived, or data arrived again after the client was stale */
  ready: [];
  /** flags changed; the keys of the flags added, changed or deleted */
  change: [keys: string[]];
  /** the controller is unreachable; the client serves its last snapshot */
  stale: [err: Error];
  /** a delivery problem: a bad flag, a bad file, a bad event */
  error: [err: Error];
}

const defaults = {
  initTimeout: 5000,
  pollInterval: 10000,
  pollTimeout: 10000,
  streamIdleTimeout: 45000,
  backoffMin: 500,
  backoffMax: 30000,
};

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

class HTTPStatusError extends Error {
  override name = "HTTPStatusError";
  constructor(
    readonly status: number,
    what: string,
    body: string,
  ) {
    super(`${what}: HTTP ${status}${body ? ": " + body.slice(0, 200) : ""}`);
  }
}

/**
 * The controller refused the token (401 or 403). The client emits it as an
 * "error" event once, until the controller answers again.
 */
export class AuthError extends HTTPStatusError {
  override name = "AuthError";
}

function statusError(status: number, what: string, body: string): HTTPStatusError {
  return status === 401 || status === 403 ? new AuthError(status, what, body) : new HTTPStatusError(status, what, body);
}

/**
 * Evaluates flags from memory. Create one per process; close() it on
 * shutdown. Safe to share across requests.
 */
export class Client extends EventEmitter<ClientEvents> {
  private snap: Snapshot | null = null;
  /** version per key, including deletes (tombstones) */
  private versions = new Map<string, number>();
  private floor = 0;
  private etag = "";
  private fresh = false;
  private stale = false;
  private refused = false;
  private readonly cfg: Required<Pick<ClientConfig, keyof typeof defaults>> & ClientConfig;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private readonly telemetry: Telemetry;
  private readonly pinning: boolean;
  private readonly firstData: Promise<void>;
  private resolveFirst!: () => void;
  private timers: NodeJS.Timeout[] = [];
  private polling = false;
  private loop: Promise<void> | undefined;
  private fileStamp = "";
  /** the cache write under way, if any */
  private saving: Promise<void> | undefined;
  /** the snapshot changed since the write under way took it */
  private saveAgain = false;

  /**
   * Starts delivery. In file mode the file is read now, and a missing or
   * invalid file throws; with serverURL the stream opens in the background:
   * await ready() before serving if defaults until then are not wanted.
   */
  constructor(cfg: ClientConfig) {
    super();
    this.cfg = { ...defaults, ...stripUndefined(cfg) };
    this.log = cfg.logger ?? { warn: (m) => console.warn(m), error: (m) => console.error(m) };
    this.telemetry = new Telemetry({ meterProvider: cfg.meterProvider, recordUnitKey: cfg.recordUnitKey });
    this.pinning = cfg.disablePinning !== true;
    this.firstData = new Promise((r) => (this.resolveFirst = r));
    const modes = [cfg.serverURL, cfg.flagsFile, cfg.flags].filter((m) => m !== undefined).length;
    if (modes !== 1) throw new Error("vigil: exactly one of serverURL, flagsFile and flags is required");
    if (cfg.flags !== undefined) {
      this.install(Snapshot.of(0, cfg.flags), true);
    } else if (cfg.flagsFile !== undefined) {
      this.loadFile(true);
      if ((cfg.fileReloadInterval ?? 0) > 0) {
        const t = setInterval(() => this.loadFile(false), cfg.fileReloadInterval);
        t.unref();
        this.timers.push(t);
      }
    } else {
      this.loadCache();
      this.loop = this.run();
    }
  }

  /**
   * Waits for the first data from the source, at most timeout ms (the
   * configured initTimeout by default). Returns false on timeout: the
   * client then serves the cached snapshot, if any, or callers' defaults
   * (reason "error", error type "provider_not_ready") until data arrives.
   */
  async ready(timeout = this.cfg.initTimeout): Promise<boolean> {
    if (this.fresh) return true;
    let t: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => (t = setTimeout(() => r(false), timeout)));
    try {
      return await Promise.race([this.firstData.then(() => true), timedOut]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Reports whether data arrived from the source and the source is reachable. */
  get isReady(): boolean {
    return this.fresh && !this.stale;
  }

  /** The flags evaluated now, or null before any data. */
  get snapshot(): Snapshot | null {
    return this.snap;
  }

  /** Stops delivery. Evaluation keeps serving the last snapshot. */
  async close(): Promise<void> {
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.loop;
    await this.saving;
  }

  // ---- evaluation ----

  private resolve(key: string, ctx: EvalContext): Detail {
    const s = this.snap;
    if (s === null) {
      return { key, value: undefined, variant: "", reason: "error", errorType: "provider_not_ready", version: 0, tracked: false };
    }
    return s.evaluate(key, ctx);
  }

  /**
   * Evaluates key, honours a variant pinned upstream for this unit, and
   * serves def, with reason "error" and error type "type_mismatch", when
   * the variant's value fails check.
   */
  private typed<T>(key: string, ctx: EvalContext, def: T, check: (v: unknown) => boolean): Detail & { value: T } {
    let d = this.resolve(key, ctx);
    const unit = ctx.key ?? "";
    const scope = this.telemetry.scopes.getStore();
    let cohort: Reason = d.reason;
    let pin: Pin | undefined;
    const snap = this.snap;
    // Pins matter only with a scope to record in, or baggage that may pin;
    // a flag disabled here is a kill switch and wins over any pin.
    if (this.pinning && snap !== null && d.errorType !== "flag_not_found" && d.reason !== "disabled") {
      const bag = scope === undefined ? propagation.getActiveBaggage() : undefined;
      if (scope !== undefined || bag !== undefined) {
        const c = snap.compiledFlag(key)!;
        const h = hashFrom(c.prefix, unit);
        let p = scope !== undefined ? scope.lookupPin(key, h) : parsePin(bag!.getEntry(PIN_PREFIX + key));
        if (p !== undefined && p.unit !== h) p = undefined;
        const v = p !== undefined ? c.values.get(p.variant) : undefined;
        if (p !== undefined && v !== undefined) {
          d = { ...d, value: v.value, variant: v.name, reason: "pinned", errorType: undefined };
          cohort = p.reason;
        } else if (scope !== undefined && d.reason !== "error") {
          pin = { variant: d.variant, reason: d.reason, unit: h };
        }
      }
    }
    if (d.variant === "") {
      d.value = def;
    } else if (!check(d.value)) {
      d = { ...d, value: def, variant: "", reason: "error", errorType: "type_mismatch" };
      cohort = "error";
      pin = undefined;
    }
    this.telemetry.observe(d, unit, scope, cohort, pin);
    return d as Detail & { value: T };
  }

  /** Evaluates a flag whose variants are booleans. */
  booleanValue(key: string, ctx: EvalContext, def: boolean): boolean {
    return this.typed(key, ctx, def, isBoolean).value;
  }

  /** booleanValue with the evaluation detail. */
  booleanDetail(key: string, ctx: EvalContext, def: boolean): Detail & { value: boolean } {
    return this.typed(key, ctx, def, isBoolean);
  }

  /** Evaluates a flag whose variants are strings. */
  stringValue(key: string, ctx: EvalContext, def: string): string {
    return this.typed(key, ctx, def, isString).value;
  }

  /** stringValue with the evaluation detail. */
  stringDetail(key: string, ctx: EvalContext, def: string): Detail & { value: string } {
    return this.typed(key, ctx, def, isString);
  }

  /** Evaluates a flag whose variants are numbers. */
  numberValue(key: string, ctx: EvalContext, def: number): number {
    return this.typed(key, ctx, def, isNumber).value;
  }

  /** numberValue with the evaluation detail. */
  numberDetail(key: string, ctx: EvalContext, def: number): Detail & { value: number } {
    return this.typed(key, ctx, def, isNumber);
  }

  /** Evaluates a flag whose variants are whole numbers in the int64 range, as Go's Int does. */
  integerValue(key: string, ctx: EvalContext, def: number): number {
    return this.typed(key, ctx, def, isInt64).value;
  }

  /** integerValue with the evaluation detail. */
  integerDetail(key: string, ctx: EvalContext, def: number): Detail & { value: number } {
    return this.typed(key, ctx, def, isInt64);
  }

  /** Evaluates a flag with any JSON variants. The value is frozen and shared. */
  jsonValue<T = unknown>(key: string, ctx: EvalContext, def: T): T {
    return this.typed(key, ctx, def, () => true).value as T;
  }

  /** jsonValue with the evaluation detail. */
  jsonDetail<T = unknown>(key: string, ctx: EvalContext, def: T): Detail & { value: T } {
    return this.typed(key, ctx, def, () => true) as Detail & { value: T };
  }

  /** @internal Evaluation for providers: records like the typed methods. */
  detail(key: string, ctx: EvalContext, check: (v: unknown) => boolean): Detail {
    return this.typed(key, ctx, undefined, check);
  }

  // ---- scopes and cohort metrics ----

  /**
   * Runs fn in a new scope, a unit of work whose outcome counts in the
   * cohort metrics of every tracked flag evaluated within it. The scope ends
   * when fn's promise settles (failed if it rejects), unless fn ended it.
   */
  async withScope<T>(fn: (scope: Scope) => Promise<T> | T): Promise<T> {
    const scope = new Scope(this.telemetry);
    return this.runInScope(scope, async () => {
      try {
        const v = await fn(scope);
        scope.end();
        return v;
      } catch (e) {
        scope.end(e);
        throw e;
      }
    });
  }

  /**
   * @internal Runs fn in scope, with the active OpenTelemetry context
   * carrying the scope's pins in its baggage; the middlewares end the scope
   * themselves.
   */
  runInScope<T>(scope: Scope, fn: () => T): T {
    const ctx = this.pinning ? scope.context(context.active()) : context.active();
    return this.telemetry.scopes.run(scope, () => context.with(ctx, fn));
  }

  /** @internal */
  newScope(): Scope {
    return new Scope(this.telemetry);
  }

  /** The scope of the current request or unit of work, if any. */
  currentScope(): Scope | undefined {
    return this.telemetry.scopes.getStore();
  }

  /**
   * Counts a business event, such as "checkout.completed", in the cohort of
   * every tracked flag evaluated so far in the current scope (counter
   * feature_flag.events). Without a scope it does nothing.
   */
  track(name: string): void {
    this.currentScope()?.track(name);
  }

  /** Marks the current scope failed with err's error.type. Without a scope it does nothing. */
  reportError(err: unknown): void {
    this.currentScope()?.reportError(err);
  }

  // ---- the store ----

  private known(key: string): number {
    return this.versions.get(key) ?? this.floor;
  }

  /** Installs s; changed names the flags that changed when the caller knows them. */
  private install(s: Snapshot, fromSource: boolean, changed = changedKeys(this.snap, s)): void {
    const prev = this.snap;
    this.snap = s;
    if (fromSource) this.markFresh();
    if (prev !== null && changed.length > 0) this.emit("change", changed);
    for (const w of s.warnings()) if (!prev?.warnings().includes(w)) this.log.warn(`vigil: ${w}`);
  }

  private markFresh(): void {
    const wasStale = this.stale;
    this.stale = false;
    this.refused = false;
    if (!this.fresh) {
      this.fresh = true;
      this.resolveFirst();
      this.emit("ready");
    } else if (wasStale) {
      this.emit("ready");
    }
  }

  private markStale(err: Error): void {
    if (this.stale || this.abort.signal.aborted) return;
    this.stale = true;
    this.log.warn(`vigil: controller unreachable, serving the last snapshot: ${err.message}`);
    this.emit("stale", err);
  }

  private markRefused(err: AuthError): void {
    if (this.refused || this.abort.signal.aborted) return;
    this.refused = true;
    this.reportProblem(err);
  }

  private reportProblem(err: Error): void {
    this.log.error(`vigil: ${err.message}`);
    if (this.listenerCount("error") > 0) this.emit("error", err);
  }

  /** Installs a full snapshot; bad flags keep their previous definition. */
  private replace(doc: unknown, persist: boolean): void {
    const d = readSnapshotDocument(doc);
    const { snapshot, errors } = Snapshot.salvage(d.revision, d.flags, this.snap ?? undefined);
    const problems = [...d.errors, ...errors];
    this.versions = new Map(snapshot.flags().map((f) => [f.key, f.version ?? 0]));
    this.floor = d.revision;
    this.install(snapshot, true);
    if (problems.length > 0) this.reportProblem(new Error(`snapshot ${d.revision}: ${problems.map((e) => e.message).join("; ")}`));
    if (persist) this.saveCache();
  }

  /**
   * Applies puts and deletes received together as one update: one copy of
   * the snapshot, one install, one cache write, and one change event naming
   * every flag that changed, so that readers see the snapshot before the
   * batch or the one after all of it. Each change is judged as if it came
   * alone: one no newer than the version held for its key (counting the
   * changes before it) is dropped, and a put that does not validate keeps
   * the definition held before it and is reported.
   */
  private applyChanges(changes: readonly Change[]): void {
    const cur = this.snap;
    if (changes.length === 0 || cur === null) return;
    // versions holds the batch's versions until it is installed; last is
    // the change that decides each key's outcome.
    const versions = new Map<string, number>();
    const last = new Map<string, Change>();
    let revision = 0;
    for (const c of changes) {
      if (c.version <= (versions.get(c.key) ?? this.known(c.key))) continue;
      if (c.put !== undefined) {
        // Checked here, not only in update, so that a bad put leaves in
        // place what the batch put before it.
        const errs = checkFlag(c.put);
        if (errs.length > 0) {
          this.reportProblem(new Error(`stream event put (id ${c.id}): ${errs.map((e) => e.message).join("\n")}`));
          continue;
        }
      }
      versions.set(c.key, c.version);
      last.set(c.key, c);
      revision = Math.max(revision, c.version);
    }
    if (last.size === 0) return;
    const puts: Flag[] = [];
    const deletes: string[] = [];
    const changed: string[] = [];
    for (const [key, c] of last) {
      if (c.put !== undefined) puts.push(c.put);
      else deletes.push(key);
      if (c.put !== undefined || cur.flag(key) !== undefined) changed.push(key);
    }
    // update throws only for a put that fails to compile, which checkFlag
    // has ruled out; should it, nothing changes and the caller reports it.
    const next = cur.update(revision, puts, deletes);
    for (const [k, v] of versions) this.versions.set(k, v);
    this.install(next, true, changed.sort());
    this.saveCache();
  }

  // ---- file mode ----

  private loadFile(first: boolean): void {
    const path = this.cfg.flagsFile!;
    try {
      const st = statSync(path);
      const stamp = `${st.mtimeMs}:${st.size}`;
      if (!first && stamp === this.fileStamp) return;
      const flags = parseFlagsFile(readFileSync(path, "utf8"), path);
      this.fileStamp = stamp;
      this.install(Snapshot.of(0, flags), true);
    } catch (e) {
      const err = new Error(`load flags ${path}: ${(e as Error).message}`);
      if (first) throw err;
      this.reportProblem(err);
    }
  }

  // ---- cache file ----

  private loadCache(): void {
    const path = this.cfg.cacheFile;
    if (path === undefined) return;
    try {
      const d = readSnapshotDocument(JSON.parse(readFileSync(path, "utf8")));
      const { snapshot } = Snapshot.salvage(d.revision, d.flags);
      this.versions = new Map(snapshot.flags().map((f) => [f.key, f.version ?? 0]));
      this.floor = d.revision;
      this.install(snapshot, false);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn(`vigil: ignoring cache ${path}: ${(e as Error).message}`);
    }
  }

  /**
   * Writes the snapshot to the cache file in the background, one write at
   * a time: changes during a write are written once it ends, with the
   * snapshot held then. Writes of a burst of changes so neither pile up nor
   * share the temporary file, which would let one rename another's
   * half-written file into place.
   */
  private saveCache(): void {
    if (this.cfg.cacheFile === undefined) return;
    this.saveAgain = true;
    if (this.saving !== undefined) return;
    this.saving = (async () => {
      while (this.saveAgain) {
        this.saveAgain = false;
        await this.writeCache();
      }
      this.saving = undefined;
    })();
  }

  /** Writes the snapshot held now through a temporary file renamed into place. */
  private async writeCache(): Promise<void> {
    const path = this.cfg.cacheFile;
    const s = this.snap;
    if (path === undefined || s === null) return;
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(tmp, JSON.stringify({ revision: s.revision, flags: s.flags() }));
      await rename(tmp, path);
    } catch (e) {
      this.log.warn(`vigil: cannot write cache ${path}: ${(e as Error).message}`);
    }
  }

  // ---- delivery from the controller ----

  private url(path: string): string {
    return this.cfg.serverURL!.replace(/\/+$/, "") + path;
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { ...extra };
    if (this.cfg.token) h.Authorization = `Bearer ${this.cfg.token}`;
    return h;
  }

  private get fetchFn(): typeof fetch {
    return this.cfg.fetch ?? fetch;
  }

  /** Keeps the stream open, reconnecting with jittered exponential backoff. */
  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let attempt = 0;
    while (!signal.aborted) {
      let delivered = false;
      try {
        delivered = await this.stream(() => {
          attempt = 0;
        });
      } catch (e) {
        if (signal.aborted) break;
        this.log.warn(`vigil: stream: ${(e as Error).message}`);
        if (!this.polling) void this.poll();
      }
      if (signal.aborted) break;
      if (delivered) attempt = 0;
      const cap = Math.min(this.cfg.backoffMax, this.cfg.backoffMin * 2 ** Math.min(attempt, 30));
      attempt++;
      // Full jitter over the upper half keeps reconnecting clients apart
      // without ever waiting less than half the step.
      await sleep(cap / 2 + Math.random() * (cap / 2), signal);
    }
  }

  /**
   * Reads one stream connection until it ends. Returns true when it
   * delivered a snapshot; throws when it could not be opened or failed,
   * or ended without the controller's end event.
   */
  private async stream(onSnapshot: () => void): Promise<boolean> {
    const conn = new AbortController();
    const stop = () => conn.abort();
    this.abort.signal.addEventListener("abort", stop, { once: true });
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => conn.abort(new Error(`no data for ${this.cfg.streamIdleTimeout} ms`)), this.cfg.streamIdleTimeout);
    };
    let delivered = false;
    // The controller ends a stream on purpose (its maximum age, a
    // shutdown) with an end event: reconnect without alarm.
    let ended = false;
    try {
      arm();
      const res = await this.fetchFn(this.url("/sdk/v1/stream"), {
        headers: this.headers({ Accept: "text/event-stream" }),
        signal: conn.signal,
      });
      if (res.status !== 200 || res.body === null) {
        throw statusError(res.status, "open stream", await res.text().catch(() => ""));
      }
      const parser = new SSEParser();
      const decoder = new TextDecoder();
      // The controller writes the changes of one store read together: the
      // puts and deletes that have arrived are applied as one batch, which
      // any other event ends. A batch larger than one read spans several:
      // while the next read is already there, it joins the batch (up to
      // maxBatchReads), and the batch is applied as soon as reading on
      // would wait for the network, so it is never held back.
      const batch: Change[] = [];
      const flush = () => {
        if (batch.length === 0) return;
        const id = batch.at(-1)!.id;
        try {
          this.applyChanges(batch.splice(0));
        } catch (e) {
          this.reportProblem(new Error(`stream events up to id ${id}: ${(e as Error).message}`));
        }
      };
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let reads = 0;
      try {
        for (;;) {
          const next = reader.read();
          let r = batch.length > 0 && reads < maxBatchReads ? await ifArrived(next) : undefined;
          if (r === undefined) {
            flush();
            reads = 0;
            r = await next;
          }
          if (r.done) break;
          reads++;
          arm();
          for (const ev of parser.push(decoder.decode(r.value, { stream: true }))) {
            try {
              if (ev.type === "put" || ev.type === "delete") {
                batch.push(readChange(ev.type, ev.id, JSON.parse(ev.data)));
                continue;
              }
              flush();
              const data: unknown = JSON.parse(ev.data);
              switch (ev.type) {
                case "snapshot":
                  this.replace(data, true);
                  this.polling = false;
                  delivered = true;
                  onSnapshot();
                  break;
                case "end":
                  ended = true;
                  break;
              }
            } catch (e) {
              this.reportProblem(new Error(`stream event ${ev.type} (id ${ev.id}): ${(e as Error).message}`));
            }
          }
        }
      } finally {
        // What arrived before the stream failed or ended is applied.
        flush();
        reader.cancel().catch(() => {});
      }
      if (!this.abort.signal.aborted && !ended) throw new Error("stream ended");
      return delivered;
    } catch (e) {
      if (this.abort.signal.aborted) return delivered;
      const reason = conn.signal.aborted && conn.signal.reason instanceof Error ? conn.signal.reason : (e as Error);
      throw reason;
    } finally {
      clearTimeout(idle);
      this.abort.signal.removeEventListener("abort", stop);
    }
  }

  /** Polls the snapshot with If-None-Match until the stream delivers again. */
  private async poll(): Promise<void> {
    this.polling = true;
    const signal = this.abort.signal;
    while (this.polling && !signal.aborted) {
      try {
        await this.pollOnce();
      } catch (e) {
        if (signal.aborted) break;
        if (e instanceof AuthError) this.markRefused(e);
        else this.markStale(e as Error);
      }
      await sleep(this.cfg.pollInterval, signal);
    }
  }

  /** Fetches the snapshot once; a 304 confirms the one held. */
  async pollOnce(): Promise<void> {
    const h: Record<string, string> = { Accept: "application/json" };
    if (this.etag !== "" && this.snap !== null) h["If-None-Match"] = this.etag;
    // One request, bounded by pollTimeout and cut short by close().
    const req = new AbortController();
    const stop = () => req.abort();
    this.abort.signal.addEventListener("abort", stop, { once: true });
    const timer = setTimeout(() => req.abort(new Error(`poll snapshot: no answer in ${this.cfg.pollTimeout} ms`)), this.cfg.pollTimeout);
    try {
      const res = await this.fetchFn(this.url("/sdk/v1/snapshot"), { headers: this.headers(h), signal: req.signal });
      if (res.status === 304) {
        await res.body?.cancel();
        this.markFresh();
        return;
      }
      if (res.status !== 200) throw statusError(res.status, "poll snapshot", await res.text().catch(() => ""));
      const doc: unknown = await res.json();
      this.etag = res.headers.get("etag") ?? "";
      this.replace(doc, true);
    } catch (e) {
      throw req.signal.aborted && req.signal.reason instanceof Error ? req.signal.reason : e;
    } finally {
      clearTimeout(timer);
      this.abort.signal.removeEventListener("abort", stop);
    }
  }
}

/** Bounds how many reads of the stream one batch of changes may span. */
const maxBatchReads = 64;

/**
 * Resolves to what p gives if its data has arrived, or to undefined when it
 * still waits for the network. A read the socket can answer settles within
 * two turns of the event loop: the socket is read in the poll phase between
 * them.
 */
function ifArrived<T>(p: Promise<T>): Promise<T | undefined> {
  const turns = new Promise<undefined>((resolve) => setImmediate(() => setImmediate(() => resolve(undefined))));
  return Promise.race([p, turns]);
}

/** A put or delete from the stream, read but not yet applied. */
interface Change {
  key: string;
  version: number;
  /** the new definition; undefined for a delete */
  put: Flag | undefined;
  /** the event's id, for reports */
  id: string;
}

/** Reads a put or delete event's data, or throws naming what is wrong. */
function readChange(type: "put" | "delete", id: string, raw: unknown): Change {
  if (type === "put") {
    const d = readSnapshotDocument({ revision: 0, flags: [raw] });
    const f = d.flags[0];
    if (f === undefined) throw new Error(`put: ${d.errors.map((e) => e.message).join("; ")}`);
    return { key: f.key, version: f.version ?? 0, put: f, id };
  }
  const d = raw as { key?: unknown; version?: unknown };
  if (typeof d?.key !== "string" || typeof d.version !== "number") throw new Error("delete: want {key, version}");
  return { key: d.key, version: d.version, put: undefined, id };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function changedKeys(prev: Snapshot | null, next: Snapshot): string[] {
  if (prev === null) return next.flags().map((f) => f.key);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of next.flags()) {
    seen.add(f.key);
    const old = prev.flag(f.key);
    if (old === undefined || old.version !== f.version || JSON.stringify(old) !== JSON.stringify(f)) out.push(f.key);
  }
  for (const f of prev.flags()) if (!seen.has(f.key)) out.push(f.key);
  return out.sort();
}

const isBoolean = (v: unknown) => typeof v === "boolean";
const isString = (v: unknown) => typeof v === "string";
const isNumber = (v: unknown) => typeof v === "number";
const isInt64 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63;

