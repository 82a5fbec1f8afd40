// The shared vector files at the repository root: every SDK must pass them
// (docs/bucketing.md, "Proving a new SDK agrees").
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { bucket, bucketOf, hash, millipercent, UNIT_BUCKET_SALT, UNIT_BUCKETS, unitBucket } from "../src/bucket.js";
import { Client } from "../src/client.js";
import type { Detail } from "../src/flag.js";
import { readSnapshotDocument } from "../src/snapshot.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));

interface BucketingFile {
  version: string;
  vectors: { salt: string; unit: string; hash: number; bucket: number }[];
  boundaries: { salt: string; unit: string; bucket: number; percent: number; treatment: boolean }[];
}

const bucketing = JSON.parse(readFileSync(root + "testdata/bucketing-v1.json", "utf8")) as BucketingFile;

test("bucketing-v1.json: every hash and bucket", () => {
  assert.equal(bucketing.version, "v1");
  assert.ok(bucketing.vectors.length >= 1200, `only ${bucketing.vectors.length} vectors`);
  let failures = 0;
  for (const v of bucketing.vectors) {
    const h = hash(v.salt, v.unit);
    if (h !== v.hash || bucket(v.salt, v.unit) !== v.bucket) {
      failures++;
      assert.fail(`salt ${JSON.stringify(v.salt)} unit ${JSON.stringify(v.unit)}: hash ${h} bucket ${bucketOf(h)}, want ${v.hash} ${v.bucket}`);
    }
  }
  assert.equal(failures, 0);
});

test("bucketing-v1.json: every boundary on its side", () => {
  assert.ok(bucketing.boundaries.length > 0);
  for (const b of bucketing.boundaries) {
    assert.equal(bucket(b.salt, b.unit), b.bucket, `bucket of ${b.unit}`);
    const inTreatment = bucket(b.salt, b.unit) < millipercent(b.percent);
    assert.equal(inTreatment, b.treatment, `${b.unit} at ${b.percent}%`);
  }
});

interface UnitBucketFile {
  version: string;
  salt: string;
  buckets: number;
  vectors: { unit: string; hash: number; bucket: number }[];
}

const unitBuckets = JSON.parse(readFileSync(root + "testdata/unit-bucket-v1.json", "utf8")) as UnitBucketFile;

test("unit-bucket-v1.json: every unit's hash and unit bucket", () => {
  assert.deepEqual([unitBuckets.version, unitBuckets.salt, unitBuckets.buckets], ["v1", UNIT_BUCKET_SALT, UNIT_BUCKETS]);
  assert.ok(unitBuckets.vectors.length >= 300, `only ${unitBuckets.vectors.length} vectors`);
  const seen = new Set<number>();
  for (const v of unitBuckets.vectors) {
    assert.equal(hash(unitBuckets.salt, v.unit), v.hash, `hash of ${JSON.stringify(v.unit)}`);
    assert.equal(unitBucket(v.unit), v.bucket, `unit bucket of ${JSON.stringify(v.unit)}`);
    seen.add(v.bucket);
  }
  assert.equal(seen.size, UNIT_BUCKETS);
});

test("the three reference values of docs/bucketing.md", () => {
  assert.deepEqual([hash("new-checkout", "user-1"), bucket("new-checkout", "user-1")], [1707527752, 39756]);
  assert.deepEqual([hash("search-v2", "ünïcødé-🙂"), bucket("search-v2", "ünïcødé-🙂")], [1762790369, 41043]);
  assert.deepEqual([hash("a", "b"), bucket("a", "b")], [2494077863, 58069]);
});

test("hash agrees with TextEncoder's UTF-8 at every tail length and split", () => {
  // An independent MurmurHash3 over TextEncoder bytes: the streaming hash
  // must give the same answer however the input is split.
  const ref = (bytes: Uint8Array): number => {
    let h = 0;
    const n = bytes.length;
    const full = n - (n % 4);
    const mul = (a: number, b: number) => Math.imul(a, b);
    for (let i = 0; i < full; i += 4) {
      let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
      k = mul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = mul(k, 0x1b873593);
      h ^= k;
      h = (h << 13) | (h >>> 19);
      h = (mul(h, 5) + 0xe6546b64) | 0;
    }
    let k = 0;
    for (let j = n - 1; j >= full; j--) k = (k << 8) | bytes[j]!;
    if (n > full) {
      k = mul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = mul(k, 0x1b873593);
      h ^= k;
    }
    h ^= n;
    h ^= h >>> 16;
    h = mul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = mul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  };
  const enc = new TextEncoder();
  const pieces = "xyz🙂é\u0301\ud800q\udc00";
  for (const salt of ["", "a", "ab", "abc", "abcd", "new-checkout", "é", "🙂"]) {
    for (let n = 0; n <= pieces.length * 3; n++) {
      const unit = pieces.repeat(3).slice(0, n);
      assert.equal(hash(salt, unit), ref(enc.encode(salt + "/" + unit)), `salt ${JSON.stringify(salt)} unit ${JSON.stringify(unit)}`);
    }
  }
});

test("millipercent rounds every 3-decimal percentage to its exact threshold", () => {
  // Parsing the decimal text is what JSON.parse (and Go's decoder) does;
  // p * 1000 then has to land within 1e-6 of the integer, and round to it.
  for (let m = 0; m <= 100000; m++) {
    const text = `${Math.floor(m / 1000)}.${String(m % 1000).padStart(3, "0")}`;
    assert.equal(millipercent(Number(text)), m, text);
  }
  assert.equal(millipercent(12.345), 12345);
  assert.throws(() => millipercent(12.3456), /more than 3 decimals/);
  assert.throws(() => millipercent(-0.001), /out of range/);
  assert.throws(() => millipercent(100.001), /out of range/);
  assert.throws(() => millipercent(NaN), /out of range/);
});

interface EvalFile {
  version: string;
  flags: unknown[];
  cases: {
    name: string;
    flag: string;
    targetingKey?: string;
    attributes?: Record<string, unknown>;
    /** the type the caller asks for; absent: any JSON value with a null default */
    type?: "boolean" | "string" | "number" | "integer" | "object";
    default?: unknown;
    expected: { value: unknown; variant?: string; reason: string; errorType?: string };
  }[];
}

test("evaluation-v1.json: every case, through the client's typed methods", () => {
  const ev = JSON.parse(readFileSync(root + "testdata/evaluation-v1.json", "utf8")) as EvalFile;
  assert.equal(ev.version, "v1");
  const doc = readSnapshotDocument({ revision: 1, flags: ev.flags });
  assert.deepEqual(doc.errors, []);
  // The typed methods are where a type_mismatch arises, so the cases run
  // through a client, not the snapshot alone.
  const client = new Client({ flags: doc.flags, logger: { warn: () => {}, error: () => {} } });
  const reasons = new Set<string>();
  const errorTypes = new Set<string>();
  const types = new Set<string>();
  for (const c of ev.cases) {
    const ctx = { key: c.targetingKey ?? "", attributes: c.attributes ?? {} };
    types.add(c.type ?? "");
    const def = c.type === undefined ? null : c.default;
    assert.notEqual(def, undefined, `${c.name}: type ${c.type} without a default`);
    let d: Detail;
    switch (c.type) {
      case "boolean":
        d = client.booleanDetail(c.flag, ctx, def as boolean);
        break;
      case "string":
        d = client.stringDetail(c.flag, ctx, def as string);
        break;
      case "number":
        d = client.numberDetail(c.flag, ctx, def as number);
        break;
      case "integer":
        d = client.integerDetail(c.flag, ctx, def as number);
        break;
      case "object":
      case undefined:
        d = client.jsonDetail(c.flag, ctx, def);
        break;
      default:
        assert.fail(`${c.name}: unknown type ${String(c.type)}`);
    }
    reasons.add(d.reason);
    errorTypes.add(d.errorType ?? "");
    assert.deepEqual(
      { value: d.value, variant: d.variant, reason: d.reason, errorType: d.errorType ?? "" },
      { value: c.expected.value, variant: c.expected.variant ?? "", reason: c.expected.reason, errorType: c.expected.errorType ?? "" },
      c.name,
    );
  }
  assert.ok(ev.cases.length >= 190);
  for (const r of ["disabled", "targeting_match", "split", "default", "error"]) assert.ok(reasons.has(r), `no case yields ${r}`);
  for (const e of ["flag_not_found", "targeting_key_missing", "type_mismatch"]) assert.ok(errorTypes.has(e), `no case yields ${e}`);
  for (const t of ["", "boolean", "string", "number", "integer", "object"]) assert.ok(types.has(t), `no case asks for type ${JSON.stringify(t)}`);
});
