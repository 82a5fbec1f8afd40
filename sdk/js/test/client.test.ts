// The client against a real HTTP controller on loopback: stream, polling
// with ETags, reconnection, last-known snapshot, cache file, file mode.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthError, Client } from "../src/client.js";
import { eventually, quiet, rolloutFlag, TestController, TOKEN } from "./controller.js";

const fast = { backoffMin: 20, backoffMax: 100, pollInterval: 50, pollTimeout: 1000, logger: quiet, initTimeout: 3000 };

// The tests' files go under one directory, removed once every test and
// its clients are done.
const root = mkdtempSync(join(tmpdir(), "vigil-js-test-"));
after(() => rmSync(root, { recursive: true, force: true }));

const sorted = (flags: unknown[]) => [...(flags as { key: string }[])].sort((a, b) => (a.key < b.key ? -1 : 1));

async function setup(t: { after: (fn: () => Promise<void> | void) => void }, extra: Record<string, unknown> = {}) {
  const ctl = new TestController();
  ctl.put(rolloutFlag("all", 100));
  ctl.put(rolloutFlag("none", 0));
  await ctl.start();
  const client = new Client({ serverURL: ctl.url, token: TOKEN, ...fast, ...extra });
  t.after(async () => {
    await client.close();
    await ctl.stop();
  });
  return { ctl, client };
}

test("stream: snapshot, then puts and deletes in version order", async (t) => {
  const { ctl, client } = await setup(t);
  assert.equal(await client.ready(), true);
  assert.equal(client.isReady, true);
  assert.equal(client.booleanValue("all", { key: "u" }, false), true);
  assert.equal(client.booleanValue("none", { key: "u" }, true), false);

  const changes: string[][] = [];
  client.on("change", (keys) => changes.push(keys));
  ctl.put(rolloutFlag("none", 100));
  await eventually(() => client.booleanValue("none", { key: "u" }, false), "put to apply");
  assert.deepEqual(changes, [["none"]]);

  // A put older than what the client holds is dropped.
  ctl.broadcast("put", { ...rolloutFlag("none", 0), version: 1 });
  ctl.delete("all");
  await eventually(() => client.booleanDetail("all", { key: "u" }, false).errorType === "flag_not_found", "delete to apply");
  assert.equal(client.booleanValue("none", { key: "u" }, false), true, "stale put must be ignored");
  // A put older than the tombstone does not resurrect the flag.
  ctl.broadcast("put", { ...rolloutFlag("all", 100), version: ctl.revision - 1 });
  ctl.put(rolloutFlag("marker", 100));
  await eventually(() => client.booleanValue("marker", { key: "u" }, false), "marker put");
  assert.equal(client.booleanDetail("all", { key: "u" }, true).reason, "error");
  assert.equal(client.snapshot?.revision, ctl.revision);
});

test("stream: a bad event or a bad flag is reported and changes nothing", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  const errors: Error[] = [];
  client.on("error", (e) => errors.push(e));
  ctl.broadcast("put", "{not json");
  ctl.broadcast("put", { ...rolloutFlag("all", 150), version: 99 });
  await eventually(() => errors.length === 2, "two errors");
  assert.match(errors[1]!.message, /rollout\.percent: 150 is out of range/);
  assert.equal(client.booleanValue("all", { key: "u" }, false), true);
});

test("stream: puts and deletes written together are applied as one update", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  const changes: string[][] = [];
  client.on("change", (keys) => changes.push(keys));
  ctl.hold();
  for (let i = 0; i < 5; i++) ctl.put(rolloutFlag(`new-${i}`, 100));
  ctl.put(rolloutFlag("none", 100));
  ctl.delete("all");
  await ctl.release();
  await eventually(() => client.snapshot?.revision === ctl.revision, "the batch to apply");
  assert.deepEqual(changes, [["new-0", "new-1", "new-2", "new-3", "new-4", "none", "all"].sort()], "one install naming every changed flag");
  assert.deepEqual(client.snapshot?.flags(), sorted(ctl.snapshot().flags));
  assert.equal(client.booleanValue("none", { key: "u" }, false), true);
  assert.equal(client.booleanDetail("all", { key: "u" }, false).errorType, "flag_not_found");
});

test("stream: each event of a batch is judged as if it came alone", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  const changes: string[][] = [];
  const errors: Error[] = [];
  client.on("change", (keys) => changes.push(keys));
  client.on("error", (e) => errors.push(e));
  ctl.hold();
  ctl.put(rolloutFlag("none", 100));
  // Stale: older than the put before it in the same batch.
  ctl.broadcast("put", { ...rolloutFlag("none", 0), version: 1 });
  // Invalid: keeps the definition the batch put before it, and is reported.
  ctl.revision++;
  const invalidID = ctl.revision;
  ctl.broadcast("put", { ...rolloutFlag("none", 150), version: ctl.revision });
  // Unreadable: reported, and the batch goes on.
  ctl.broadcast("put", "{not json");
  // A delete then a re-create leaves the flag; a put older than the
  // re-create is dropped.
  ctl.delete("all");
  ctl.put(rolloutFlag("all", 0));
  ctl.broadcast("put", { ...rolloutFlag("all", 100), version: ctl.revision - 1 });
  await ctl.release();
  await eventually(() => client.snapshot?.revision === ctl.revision && errors.length === 2, "the batch to apply");
  assert.deepEqual(changes, [["all", "none"]]);
  assert.deepEqual(client.snapshot?.flags(), sorted(ctl.snapshot().flags));
  assert.equal(client.booleanValue("none", { key: "u" }, false), true, "the batch's valid put of none holds");
  assert.equal(client.booleanValue("all", { key: "u" }, true), false, "all is re-created at 0%");
  assert.ok(
    errors.some((e) => e.message.includes(`stream event put (id ${invalidID})`) && /rollout\.percent: 150 is out of range/.test(e.message)),
    errors.map((e) => e.message).join("; "),
  );
});

test("stream: a batch cut across writes converges, at most one update per write", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  const changes: string[][] = [];
  client.on("change", (keys) => changes.push(keys));
  ctl.hold();
  for (let i = 0; i < 60; i++) ctl.put(rolloutFlag(`f-${i}`, i));
  for (let i = 0; i < 60; i += 3) ctl.delete(`f-${i}`);
  ctl.delete("none");
  await ctl.release(7);
  await eventually(() => client.snapshot?.revision === ctl.revision, "the batch to apply");
  assert.deepEqual(client.snapshot?.flags(), sorted(ctl.snapshot().flags));
  assert.ok(changes.length >= 1 && changes.length <= 7, `${changes.length} updates for 7 writes`);
});

test("stream: a batch larger than one read is applied as one update once all of it has arrived", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  const changes: string[][] = [];
  client.on("change", (keys) => changes.push(keys));
  ctl.hold();
  // About 1 MB in one write: many reads of the socket (at most 64 KiB each).
  for (let i = 0; i < 2000; i++) ctl.put(rolloutFlag(`f-${i}`, i % 101, { description: "x".repeat(400) }));
  await ctl.release();
  await eventually(() => client.snapshot?.revision === ctl.revision, "the batch to apply");
  assert.deepEqual(client.snapshot?.flags(), sorted(ctl.snapshot().flags));
  // One update, or a few should the machine's load let the client catch up
  // with the socket; one per read without reading ahead.
  assert.ok(changes.length <= 3, `${changes.length} updates for one write of 2,000 puts`);
});

test("stream down: polls the snapshot with If-None-Match and applies changes", async (t) => {
  const ctl = new TestController();
  ctl.put(rolloutFlag("f", 0));
  ctl.streamStatus = 503;
  await ctl.start();
  const client = new Client({ serverURL: ctl.url, token: TOKEN, ...fast });
  t.after(async () => {
    await client.close();
    await ctl.stop();
  });
  assert.equal(await client.ready(), true, "the first poll makes the client ready");
  await eventually(() => ctl.requests.some((r) => r === `GET /sdk/v1/snapshot "1"`), "a conditional poll");
  assert.equal(client.isReady, true, "304 keeps the client fresh");
  ctl.put(rolloutFlag("f", 100));
  await eventually(() => client.booleanValue("f", { key: "u" }, false), "the poll to bring the change");
  // The stream comes back: the client reconnects and stops polling. An
  // event only the stream carries shows that the client has read the
  // stream's snapshot, after which at most the poll in flight may finish.
  ctl.streamStatus = 200;
  await eventually(() => ctl.openStreams === 1, "the stream to reopen");
  let streamEvent = false;
  client.on("change", (keys) => (streamEvent ||= keys.includes("stream-only")));
  ctl.broadcast("put", { ...rolloutFlag("stream-only", 100), version: 1000 });
  await eventually(() => streamEvent, "the stream's event");
  // That no poll follows is an absence, which no event announces. It is
  // bounded by the stream's own pings rather than by a wall-clock sleep:
  // pings and polls run on timers of the same 50 ms interval in this one
  // event loop, so a slow machine delays both alike, and five pings span at
  // least four poll intervals, in which a client still polling sends more
  // than the one poll that may have been in flight.
  const polls = ctl.requests.filter((r) => r.startsWith("GET /sdk/v1/snapshot")).length;
  const pings = ctl.pings;
  await eventually(() => ctl.pings >= pings + 5, "five pings on the open stream");
  const after = ctl.requests.filter((r) => r.startsWith("GET /sdk/v1/snapshot")).length;
  assert.ok(after <= polls + 1, `still polling with the stream open: ${polls} then ${after}`);
});

test("unreachable controller: stale, last snapshot served, ready again on return", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  const events: string[] = [];
  client.on("stale", () => events.push("stale"));
  client.on("ready", () => events.push("ready"));
  ctl.goDown();
  await eventually(() => events.includes("stale"), "stale");
  assert.equal(client.isReady, false);
  assert.equal(client.booleanValue("all", { key: "u" }, false), true, "last snapshot still served");
  ctl.comeBack();
  await eventually(() => events.at(-1) === "ready", "ready after the controller returns");
  assert.equal(client.isReady, true);
});

test("a silent stream is reopened after the idle timeout", async (t) => {
  const { ctl, client } = await setup(t, { streamIdleTimeout: 200 });
  await client.ready();
  ctl.silent = true;
  await eventually(() => ctl.requests.filter((r) => r.startsWith("GET /sdk/v1/stream")).length >= 2, "a second stream", 5000);
});

test("a dropped stream reconnects and resynchronizes from the new snapshot", async (t) => {
  const { ctl, client } = await setup(t);
  await client.ready();
  ctl.dropStreams();
  ctl.revision++; // a change the client missed while disconnected
  ctl.flags.set("late", { ...rolloutFlag("late", 100), version: ctl.revision });
  await eventually(() => client.booleanValue("late", { key: "u" }, false), "the missed flag after reconnecting");
});

test("a stream the controller ends is reopened without a warning; one cut is warned of", async (t) => {
  const warnings: string[] = [];
  const { ctl, client } = await setup(t, { logger: { warn: (m: string) => warnings.push(m), error: () => {} } });
  await client.ready();
  const streams = () => ctl.requests.filter((r) => r.startsWith("GET /sdk/v1/stream")).length;
  for (let i = 1; i <= 3; i++) {
    await eventually(() => ctl.openStreams === 1, `stream ${i} open`);
    ctl.endStreams("max-age");
    await eventually(() => streams() > i, `stream ${i + 1}`);
  }
  assert.equal(warnings.length, 0, `warnings for planned ends: ${warnings.join("; ")}`);
  await eventually(() => ctl.openStreams === 1, "the stream open again");
  ctl.dropStreams();
  await eventually(() => warnings.some((w) => w.startsWith("vigil: stream:")), "a warning for the cut stream");
});

test("bad token: an error event once, not ready, callers get their defaults with provider_not_ready", async (t) => {
  const { ctl, client } = await setup(t, { token: "wrong", initTimeout: 300 });
  const errors: Error[] = [];
  client.on("error", (e) => errors.push(e));
  assert.equal(await client.ready(), false);
  await eventually(() => ctl.requests.filter((r) => r.startsWith("GET /sdk/v1/snapshot")).length >= 3, "several polls");
  assert.equal(errors.length, 1, "one error event, not one per poll");
  assert.ok(errors[0] instanceof AuthError);
  assert.match(errors[0]!.message, /poll snapshot: HTTP 401/);
  const d = client.booleanDetail("all", { key: "u" }, true);
  assert.deepEqual([d.value, d.reason, d.errorType], [true, "error", "provider_not_ready"]);
});

test("cache file: a cold start with the controller down serves the last snapshot", async (t) => {
  const dir = mkdtempSync(join(root, "cache-"));
  const cacheFile = join(dir, "sub", "snapshot.json");
  const { ctl, client } = await setup(t, { cacheFile });
  await client.ready();
  await eventually(() => {
    try {
      return JSON.parse(readFileSync(cacheFile, "utf8")).revision === ctl.revision;
    } catch {
      return false;
    }
  }, "the cache file");
  await client.close();
  await ctl.stop();
  const cold = new Client({ serverURL: ctl.url, token: TOKEN, ...fast, cacheFile, initTimeout: 200 });
  t.after(() => cold.close());
  assert.equal(cold.booleanValue("all", { key: "u" }, false), true, "served from the cache before any answer");
  assert.equal(await cold.ready(), false, "not fresh: the controller never answered");
});

test("cache file: a burst of changes is written one write at a time, ending with the last snapshot", async (t) => {
  const dir = mkdtempSync(join(root, "cache-"));
  const cacheFile = join(dir, "snapshot.json");
  const warnings: string[] = [];
  const { ctl, client } = await setup(t, { cacheFile, logger: { warn: (m: string) => warnings.push(m), error: () => {} } });
  await client.ready();
  // Many writes, each an update and a cache write while earlier ones are
  // still under way.
  ctl.hold();
  for (let i = 0; i < 200; i++) ctl.put(rolloutFlag(`f-${i}`, i % 101, { description: "x".repeat(2000) }));
  await ctl.release(50);
  await eventually(() => client.snapshot?.revision === ctl.revision, "the puts to apply");
  await client.close();
  assert.deepEqual(warnings, []);
  const cached = JSON.parse(readFileSync(cacheFile, "utf8"));
  assert.equal(cached.revision, ctl.revision, "close waits for the last write");
  assert.deepEqual(cached.flags, sorted(ctl.snapshot().flags));
});

test("file mode: JSON and YAML, reload on change, a bad file keeps the flags", async (t) => {
  const dir = mkdtempSync(join(root, "file-"));
  const path = join(dir, "flags.yaml");
  writeFileSync(path, "flags:\n  - key: f\n    variants: {off: off, on: on}\n    control: off\n    treatment: on\n    enabled: true\n    rollout: {percent: 100}\n");
  const client = new Client({ flagsFile: path, fileReloadInterval: 30, logger: quiet });
  t.after(() => client.close());
  assert.equal(await client.ready(), true);
  assert.equal(client.stringValue("f", { key: "u" }, "default"), "on", "YAML 1.2: on and off are strings");

  const changes: string[][] = [];
  const errors: Error[] = [];
  client.on("change", (k) => changes.push(k));
  client.on("error", (e) => errors.push(e));
  writeFileSync(path, JSON.stringify({ flags: [{ key: "f", variants: { off: "off", on: "on" }, control: "off", treatment: "on", enabled: false }] }));
  utimesSync(path, new Date(), new Date(Date.now() + 2000));
  await eventually(() => changes.length === 1, "a change");
  assert.deepEqual(changes[0], ["f"]);
  assert.equal(client.stringDetail("f", { key: "u" }, "d").reason, "disabled");

  writeFileSync(path, "flags:\n  - key: f\n    variants: {a: 1}\n    control: a\n    typo: true\n");
  utimesSync(path, new Date(), new Date(Date.now() + 4000));
  // The reload may read the file before and after its time stamp moves:
  // one error or two, never a change.
  await eventually(() => errors.length >= 1, "an error for the bad file");
  assert.match(errors[0]!.message, /flag f: typo: unknown field/);
  assert.equal(client.stringDetail("f", { key: "u" }, "d").reason, "disabled", "the last good flags stay");

  const bad = join(dir, "bad.json");
  writeFileSync(bad, JSON.stringify({ flags: [{ key: "x", variants: {}, control: "a" }] }));
  assert.throws(() => new Client({ flagsFile: bad, logger: quiet }), /load flags .*bad\.json: flag x: variants: at least one variant is required/);
  assert.throws(() => new Client({ flagsFile: join(dir, "missing.yaml"), logger: quiet }), /ENOENT/);
});

test("typed getters serve the default with type_mismatch on the wrong type", () => {
  const client = new Client({
    flags: [
      { key: "n", variants: { a: 1.5, b: 2 }, control: "a", enabled: true },
      { key: "i", variants: { a: 7 }, control: "a", enabled: true },
      { key: "j", variants: { a: { limit: 10 } }, control: "a", enabled: true },
    ],
    logger: quiet,
  });
  assert.equal(client.numberValue("n", {}, 0), 1.5);
  const d = client.integerDetail("n", {}, 3);
  assert.deepEqual([d.value, d.variant, d.reason, d.errorType], [3, "", "error", "type_mismatch"]);
  assert.equal(client.integerValue("i", {}, 0), 7);
  assert.equal(client.booleanDetail("i", {}, true).errorType, "type_mismatch");
  assert.equal(client.stringValue("i", {}, "x"), "x");
  const j = client.jsonValue<{ limit: number }>("j", {}, { limit: 0 });
  assert.equal(j.limit, 10);
  assert.ok(Object.isFrozen(j), "shared values are frozen");
  assert.equal(client.jsonDetail("missing", {}, null).errorType, "flag_not_found");
  assert.throws(() => new Client({ logger: quiet }), /exactly one of serverURL, flagsFile and flags/);
});
