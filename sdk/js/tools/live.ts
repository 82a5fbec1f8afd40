// Runs the SDK's clients against a real controller for the cross-language
// test (internal/crosslang), which starts `vigil serve`, changes flags
// through its admin API and compares every answer with the Go SDK's.
//
// Usage: node dist/tools/live.js, then one JSON command a line on standard
// input; each gets one JSON answer a line on standard output ({"error": "..."}
// when it failed). Commands:
//
//	{"cmd": "start", "serverURL": "...", "token": "...", "badToken": "..."}
//	    starts three clients and an OpenFeature provider, and answers once
//	    they are ready (the refused client once its token was refused):
//	    "stream" reads the stream; "poll" polls the snapshot because its
//	    stream requests are answered 503 here, before they leave the
//	    process, a fault the real controller cannot be asked for; "refused"
//	    has a token the controller refuses; the provider wraps "stream".
//	{"cmd": "eval", "cases": [{"flag", "type", "default", "key", "attributes"}]}
//	    evaluates every case in every client and through OpenFeature.
//	{"cmd": "wait", "revision": N, "key": "k"}
//	    waits until "stream" and "poll" hold revision N and, with key, until
//	    OpenFeature announced a configuration change naming it; answers the
//	    change events seen since the last wait.
//	{"cmd": "waitNotModified", "etag": "\"N\""}
//	    waits until "poll" got a 304 for If-None-Match etag.
//	{"cmd": "report"}
//	    answers every HTTP request each client made, with its status, and
//	    every error, stale and log event.
//	{"cmd": "close"}
//	    closes everything and exits.

import { createInterface } from "node:readline";
import { OpenFeature, ProviderEvents, type Client as OFClient, type EvaluationContext, type JsonValue } from "@openfeature/server-sdk";
import { Client, type Detail, type EvalContext } from "../src/index.js";
import { VigilProvider } from "../src/openfeature.js";

interface Recorded {
  method: string;
  path: string;
  ifNoneMatch: string;
  status: number;
  etag: string;
  /** answered in this process, never sent */
  local: boolean;
}

interface Observed {
  requests: Recorded[];
  changes: string[][];
  errors: string[];
  stale: string[];
  log: string[];
}

interface Case {
  flag: string;
  type: "boolean" | "string" | "number" | "integer" | "object";
  default: unknown;
  key: string;
  attributes?: Record<string, unknown>;
}

const WAIT_MS = 60000;

// Waiters are checked whenever anything is observed, so that a wait ends on
// the event it waits for rather than on a timer.
const waiters = new Set<() => void>();
function kick(): void {
  for (const w of [...waiters]) w();
}

function until(cond: () => boolean, what: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what()}`));
    }, WAIT_MS);
    function check() {
      if (!cond()) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve();
    }
    waiters.add(check);
    check();
  });
}

function observed(): Observed {
  return { requests: [], changes: [], errors: [], stale: [], log: [] };
}

/** A fetch that records every request; with refuseStream, stream requests get a 503 here. */
function recordingFetch(o: Observed, refuseStream: boolean): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = (init?.headers ?? {}) as Record<string, string>;
    const r: Recorded = { method: init?.method ?? "GET", path: url.pathname, ifNoneMatch: headers["If-None-Match"] ?? "", status: 0, etag: "", local: false };
    let res: Response;
    if (refuseStream && url.pathname === "/sdk/v1/stream") {
      res = new Response(JSON.stringify({ error: "stream refused by the test" }), { status: 503, headers: { "Content-Type": "application/json" } });
      r.local = true;
    } else {
      res = await fetch(input, init);
    }
    r.status = res.status;
    r.etag = res.headers.get("etag") ?? "";
    o.requests.push(r);
    kick();
    return res;
  };
}

function watch(c: Client, o: Observed): void {
  c.on("change", (keys) => {
    o.changes.push(keys);
    kick();
  });
  c.on("error", (e) => {
    o.errors.push(e.message);
    kick();
  });
  c.on("stale", (e) => {
    o.stale.push(e.message);
    kick();
  });
}

function logger(o: Observed) {
  return { warn: (m: string) => void o.log.push(`warn: ${m}`), error: (m: string) => void o.log.push(`error: ${m}`) };
}

let stream: Client | undefined;
let poll: Client | undefined;
let refused: Client | undefined;
let of: OFClient | undefined;
const seen = { stream: observed(), poll: observed(), refused: observed() };
let ofChanges: string[][] = [];
let ofErrors: string[] = [];

async function start(cmd: { serverURL: string; token: string; badToken: string }): Promise<unknown> {
  stream = new Client({ serverURL: cmd.serverURL, token: cmd.token, logger: logger(seen.stream), fetch: recordingFetch(seen.stream, false) });
  // A long backoff keeps the refused stream from retrying while the test
  // runs: the client polls meanwhile, which is what this client is for.
  poll = new Client({
    serverURL: cmd.serverURL,
    token: cmd.token,
    pollInterval: 50,
    backoffMin: 600000,
    backoffMax: 600000,
    logger: logger(seen.poll),
    fetch: recordingFetch(seen.poll, true),
  });
  refused = new Client({ serverURL: cmd.serverURL, token: cmd.badToken, pollInterval: 50, logger: logger(seen.refused), fetch: recordingFetch(seen.refused, false) });
  watch(stream, seen.stream);
  watch(poll, seen.poll);
  watch(refused, seen.refused);
  const provider = new VigilProvider(stream);
  await OpenFeature.setProviderAndWait("crosslang", provider);
  of = OpenFeature.getClient("crosslang");
  of.addHandler(ProviderEvents.ConfigurationChanged, (d) => {
    ofChanges.push(d?.flagsChanged ?? []);
    kick();
  });
  of.addHandler(ProviderEvents.Error, (d) => {
    ofErrors.push(d?.message ?? "");
    kick();
  });
  const ready = { stream: await stream.ready(WAIT_MS), poll: await poll.ready(WAIT_MS) };
  await until(
    () => seen.refused.errors.length > 0,
    () => "the controller to refuse the bad token",
  );
  return { ready, refused: seen.refused.errors[0] };
}

interface Answer {
  value: unknown;
  variant: string;
  reason: string;
  errorType: string;
}

function evalClient(c: Client, k: Case): Answer {
  const ctx: EvalContext = { key: k.key, attributes: k.attributes ?? {} };
  let d: Detail;
  switch (k.type) {
    case "boolean":
      d = c.booleanDetail(k.flag, ctx, k.default as boolean);
      break;
    case "string":
      d = c.stringDetail(k.flag, ctx, k.default as string);
      break;
    case "number":
      d = c.numberDetail(k.flag, ctx, k.default as number);
      break;
    case "integer":
      d = c.integerDetail(k.flag, ctx, k.default as number);
      break;
    case "object":
      d = c.jsonDetail(k.flag, ctx, k.default);
      break;
  }
  return { value: d.value, variant: d.variant, reason: d.reason, errorType: d.errorType ?? "" };
}

/** OpenFeature has no integer type: those cases answer null. */
async function evalOpenFeature(k: Case): Promise<unknown> {
  const ctx: EvaluationContext = { ...(k.attributes as EvaluationContext | undefined) };
  if (k.key !== "") ctx.targetingKey = k.key;
  const c = of!;
  let d;
  switch (k.type) {
    case "boolean":
      d = await c.getBooleanDetails(k.flag, k.default as boolean, ctx);
      break;
    case "string":
      d = await c.getStringDetails(k.flag, k.default as string, ctx);
      break;
    case "number":
      d = await c.getNumberDetails(k.flag, k.default as number, ctx);
      break;
    case "object":
      d = await c.getObjectDetails(k.flag, k.default as JsonValue, ctx);
      break;
    default:
      return null;
  }
  return { value: d.value, variant: d.variant ?? "", reason: d.reason ?? "", errorCode: d.errorCode ?? "" };
}

async function evaluate(cmd: { cases: Case[] }): Promise<unknown> {
  const openfeature: unknown[] = [];
  for (const k of cmd.cases) openfeature.push(await evalOpenFeature(k));
  return {
    stream: cmd.cases.map((k) => evalClient(stream!, k)),
    poll: cmd.cases.map((k) => evalClient(poll!, k)),
    refused: cmd.cases.map((k) => evalClient(refused!, k)),
    openfeature,
  };
}

async function wait(cmd: { revision: number; key?: string }): Promise<unknown> {
  const at = (c: Client | undefined) => c?.snapshot?.revision ?? -1;
  await until(
    () => at(stream) >= cmd.revision && at(poll) >= cmd.revision && (cmd.key === undefined || ofChanges.some((keys) => keys.includes(cmd.key!))),
    () => `revision ${cmd.revision}${cmd.key ? ` and a change of ${cmd.key}` : ""}: stream at ${at(stream)}, poll at ${at(poll)}, OpenFeature changes ${JSON.stringify(ofChanges)}`,
  );
  const out = { stream: seen.stream.changes, poll: seen.poll.changes, openfeature: ofChanges };
  seen.stream.changes = [];
  seen.poll.changes = [];
  ofChanges = [];
  return out;
}

async function waitNotModified(cmd: { etag: string }): Promise<unknown> {
  const hit = () => seen.poll.requests.find((r) => r.path === "/sdk/v1/snapshot" && r.ifNoneMatch === cmd.etag && r.status === 304);
  await until(
    () => hit() !== undefined,
    () => `a 304 for If-None-Match ${cmd.etag}; polls so far ${JSON.stringify(seen.poll.requests.slice(-5))}`,
  );
  return hit();
}

async function close(): Promise<unknown> {
  await OpenFeature.close();
  await Promise.all([stream?.close(), poll?.close(), refused?.close()]);
  return {};
}

const commands: Record<string, (cmd: never) => Promise<unknown>> = {
  start,
  eval: evaluate,
  wait,
  waitNotModified,
  report: async () => ({ ...seen, openfeatureErrors: ofErrors }),
  close,
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === "") continue;
  let answer: unknown;
  let name = "";
  try {
    const cmd = JSON.parse(line) as { cmd: string };
    name = cmd.cmd;
    const run = commands[name];
    if (run === undefined) throw new Error(`unknown command ${JSON.stringify(name)}`);
    answer = await run(cmd as never);
  } catch (e) {
    answer = { error: `${name}: ${(e as Error).stack ?? String(e)}` };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (name === "close") break;
}
process.exit(0);
