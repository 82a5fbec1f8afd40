// Benchmark: evaluating a rollout flag in memory, the per-request cost the
// SDK adds to a service. Run `npm run build && npm run bench`.
import { Snapshot } from "../dist/src/snapshot.js";

const flag = {
  key: "new-checkout",
  variants: { off: false, on: true },
  control: "off",
  treatment: "on",
  enabled: true,
  targets: [{ variant: "on", units: ["qa-1", "qa-2"] }],
  rollout: { percent: 37.5 },
  version: 1,
  tracked: true,
};
const snap = Snapshot.of(1, [flag]);
const units = Array.from({ length: 1024 }, (_, i) => `user-${(i * 7919) % 100000}-${i}`);
const rule = Snapshot.of(1, [
  { ...flag, key: "rule", rules: [{ variant: "on", when: [{ attribute: "plan", op: "in", values: ["beta", "gold"] }] }] },
]);
const attrs = { plan: "free", country: "NL" };

// run reports the fastest of several rounds: the machine is shared, and
// the slower rounds measure the neighbours, not the SDK.
function run(name, n, fn) {
  let sink = 0;
  for (let i = 0; i < 200000; i++) sink += fn(i); // warm up the JIT
  const rounds = [];
  for (let r = 0; r < 7; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink += fn(i);
    rounds.push(Number(process.hrtime.bigint() - start) / n);
  }
  rounds.sort((a, b) => a - b);
  const ns = rounds[0];
  console.log(`${name.padEnd(54)} ${String(n).padStart(8)} ops x7  min ${ns.toFixed(1).padStart(6)} ns/op  median ${rounds[3].toFixed(1).padStart(6)} ns/op`);
  if (sink === -1) console.log(sink);
  return ns;
}

const n = Number(process.env.BENCH_N ?? 1000000);
const results = {
  rollout: run("Snapshot.evaluate rollout flag (split)", n, (i) => (snap.evaluate("new-checkout", { key: units[i & 1023] }).variant === "on" ? 1 : 0)),
  rule: run("Snapshot.evaluate rule miss then rollout", n, (i) => (rule.evaluate("rule", { key: units[i & 1023], attributes: attrs }).variant === "on" ? 1 : 0)),
};
const client = await import("../dist/src/client.js").catch(() => null);
if (client !== null) {
  const c = new client.Client({ flags: [flag] });
  await c.ready();
  results.client = run("Client.booleanValue rollout flag (no scope, no span)", n, (i) => (c.booleanValue("new-checkout", { key: units[i & 1023] }, false) ? 1 : 0));
  const scope = c.newScope();
  results.scoped = c.runInScope(scope, () =>
    run("Client.booleanValue rollout flag (in a request scope)", n, (i) => (c.booleanValue("new-checkout", { key: units[i & 1023] }, false) ? 1 : 0)),
  );
  scope.end();
  await c.close();
}
console.log(`node ${process.version}, ${(await import("node:os")).cpus()[0].model}, ${(await import("node:os")).cpus().length} cores`);
if (results.rollout > 1000) {
  console.error(`rollout evaluation took ${results.rollout.toFixed(1)} ns, over the 1 µs budget`);
  process.exit(1);
}
