// Benchmark: a batch of puts arriving on the stream at once, as when the
// controller moves every rollout in one step (issue 18): 10,000 flags,
// then one write of 10,000 puts, one per flag. Measures the time from the
// write until the client holds the batch's revision, and how many
// snapshots it installed on the way (change events). A real Client reads
// a real SSE stream on loopback. Run `npm run build && node
// bench/stream-batch.js`; BENCH_FLAGS sets the number of flags,
// BENCH_ROUNDS the number of batches, BENCH_CACHE=1 gives the client a
// cache file.
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "../dist/src/client.js";

const n = Number(process.env.BENCH_FLAGS ?? 10000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const withCache = process.env.BENCH_CACHE === "1";

let revision = 0;
const flag = (i, percent) => ({
  key: `flag-${String(i).padStart(5, "0")}`,
  variants: { off: false, on: true },
  control: "off",
  treatment: "on",
  enabled: true,
  rollout: { percent },
  tracked: true,
  version: ++revision,
});
const flags = Array.from({ length: n }, (_, i) => flag(i, 1));
let stream = null;
const server = createServer((req, res) => {
  if (req.url !== "/sdk/v1/stream") return res.writeHead(404).end();
  res.writeHead(200, { "Content-Type": "text/event-stream" });
  res.write(`event: snapshot\nid: ${revision}\ndata: ${JSON.stringify({ revision, flags })}\n\n`);
  stream = res;
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const dir = withCache ? mkdtempSync(join(tmpdir(), "vigil-bench-")) : undefined;
const client = new Client({
  serverURL: `http://127.0.0.1:${server.address().port}`,
  cacheFile: dir && join(dir, "snapshot.json"),
  logger: { warn: (m) => console.warn(m), error: (m) => console.error(m) },
});
if (!(await client.ready(30000))) throw new Error("no snapshot in 30 s");
let installs = 0;
client.on("change", () => installs++);

for (let r = 1; r <= rounds; r++) {
  const text = flags.map((_, i) => `event: put\nid: ${revision + 1}\ndata: ${JSON.stringify(flag(i, r + 1))}\n\n`).join("");
  installs = 0;
  const start = process.hrtime.bigint();
  await new Promise((done) => {
    client.on("change", function check() {
      if (client.snapshot.revision !== revision) return;
      client.off("change", check);
      done();
    });
    stream.write(text);
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(
    `${n} puts on ${n} flags in one write${withCache ? ", cache file" : ""}: ${ms.toFixed(0).padStart(6)} ms, ${String(installs).padStart(5)} installs, peak RSS ${rss.toFixed(0)} MB, ${(text.length / 1e6).toFixed(1)} MB of events`,
  );
}
console.log(`node ${process.version}, ${cpus()[0].model}, ${cpus().length} cores`);
stream.destroy();
await client.close();
server.close();
if (dir) rmSync(dir, { recursive: true, force: true });
