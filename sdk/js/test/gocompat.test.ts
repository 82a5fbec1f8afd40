// Conversions that must match Go's strconv and fmt; expectations from Go.
import { test } from "node:test";
import assert from "node:assert/strict";
import { goFormatFloatF, goParseFloat, goSprint, goTrimSpace } from "../src/gocompat.js";
import { parseVersion, compareVersions } from "../src/semver.js";
import { SSEParser, EventTooLargeError } from "../src/sse.js";

test("goParseFloat accepts what strconv.ParseFloat accepts", () => {
  const cases: [string, number | undefined][] = [
    ["0x1p-2", 0.25], ["0x_1p0", 1], ["0x1_0p0", 16], ["1_0", 10], ["1__0", undefined], ["_1", undefined], ["1_", undefined],
    ["0x1.8p1", 3], ["0x.8p1", 1], ["0x1", undefined], ["+nan", undefined], ["infin", undefined], ["Inf", Infinity],
    ["+Infinity", Infinity], ["-inf", -Infinity], ["1e400", undefined], ["1e-400", 0], [".5", 0.5], ["5.", 5], [".", undefined],
    ["0x1p1_0", 1024], ["0x1.p0", 1], ["0x.p0", undefined], ["0X1P-1074", 5e-324], ["0x1p-1075", 0],
    ["0x1.fffffffffffff8p1023", undefined], ["", undefined], [" 1", undefined], ["1e", undefined], ["-0", -0], ["12.345", 12.345],
  ];
  for (const [s, want] of cases) assert.equal(goParseFloat(s), want, JSON.stringify(s));
  assert.ok(Number.isNaN(goParseFloat("NaN")));
});

test("goFormatFloatF and goSprint spell numbers as Go does", () => {
  const f: [number, string][] = [
    [1e21, "1000000000000000000000"], [1e-7, "0.0000001"], [-0, "-0"], [0, "0"], [12.5, "12.5"], [1.5e300, "15" + "0".repeat(299)],
    [-2e7, "-20000000"], [123456789.125, "123456789.125"], [Infinity, "+Inf"], [NaN, "NaN"],
  ];
  for (const [n, want] of f) assert.equal(goFormatFloatF(n), want, String(n));
  const p: [unknown, string][] = [
    [[1e6], "[1e+06]"], [[123456], "[123456]"], [[1234567], "[1.234567e+06]"], [[1e20], "[1e+20]"], [[1e-4], "[0.0001]"],
    [[1e-5], "[1e-05]"], [[0.000123], "[0.000123]"], [[-2e7], "[-2e+07]"], [[1.5e300], "[1.5e+300]"], [[1, "a", null, true], "[1 a <nil> true]"],
    [{ b: 1e6, a: [true, null] }, "map[a:[true <nil>] b:1e+06]"], [{}, "map[]"], [[], "[]"],
  ];
  for (const [v, want] of p) assert.equal(goSprint(v), want, JSON.stringify(v));
});

test("goTrimSpace trims what unicode.IsSpace calls space", () => {
  assert.equal(goTrimSpace("\u0085 42\u00a0\u3000"), "42");
  assert.equal(goTrimSpace("\ufeff42"), "\ufeff42", "U+FEFF is not space to Go");
  assert.equal(goTrimSpace(""), "");
});

test("semver: loose parsing and precedence as Masterminds semver v3", () => {
  const order = ["0.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "v1", "1.2", "1.10.0", "10.0.0"];
  for (let i = 0; i + 1 < order.length; i++) {
    const a = parseVersion(order[i]!)!;
    const b = parseVersion(order[i + 1]!)!;
    assert.equal(compareVersions(a, b), -1, `${order[i]} < ${order[i + 1]}`);
    assert.equal(compareVersions(b, a), 1);
  }
  assert.equal(compareVersions(parseVersion("1.2.3+a")!, parseVersion("1.2.3+b")!), 0, "metadata is ignored");
  assert.equal(compareVersions(parseVersion("01.2.3")!, parseVersion("1.2.3")!), 0, "leading zeros are coerced");
  for (const bad of ["latest", "1.2.3.4", "1.2.3-01", "1.2.3-", "v", "", "1.2.3+", "99999999999999999999.0.0", "x".repeat(300)]) {
    assert.equal(parseVersion(bad), undefined, bad);
  }
});

test("SSE: line endings split across chunks, comments, multi-line data, ids, limits", () => {
  const p = new SSEParser(64);
  const evs = [
    ...p.push("\ufeff: ping\r"),
    ...p.push("\nevent: put\r\nid: 7\ndata: a\r"),
    ...p.push("data: b\n\n"),
    ...p.push("data:no space\n\nevent: x\n\n"),
  ];
  assert.deepEqual(evs, [
    { type: "put", id: "7", data: "a\nb" },
    { type: "message", id: "7", data: "no space" },
  ]);
  assert.throws(() => p.push("data: " + "x".repeat(100)), EventTooLargeError);
});
