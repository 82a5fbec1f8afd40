// RE2 patterns, translated for JavaScript, must accept exactly what Go's
// regexp accepts. The expectations were produced by Go's regexp.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compileRE2, InvalidPatternError, UnsupportedPatternError } from "../src/re2.js";
import { Snapshot } from "../src/snapshot.js";

const cases: [string, string, boolean][] = [
["a.b", "a\rb", true],
["a.b", "a\nb", false],
["a.b", "a\u2028b", true],
["(?s)a.b", "a\nb", true],
["\\s", " ", false],
["\\s", "\u000b", false],
["\\s", "\f", true],
["^[]a]+$", "]a]", true],
["^[^]a]$", "b", true],
["\\Q1.5\\E", "125", false],
["\\Q1.5\\E", "1.5", true],
["^[[:alpha:]]+$", "abcé", false],
["^[[:^digit:]]+$", "ab", true],
["(?i)straße", "STRASSE", false],
["(?i)k", "K", true],
["(?i)ſ", "S", true],
["^\\pL+$", "Ωmega", true],
["\\p{Greek}", "xβ", true],
["\\PL", "abc", false],
["\\p{^L}", "ab1", true],
["(?m)^x$", "a\nx\nb", true],
["(?m)^x$", "a\rx\rb", false],
["^x$", "x\n", false],
["\\Ax\\z", "x", true],
["a{,2}", "a{,2}", true],
["a{2}", "aa", true],
["\\x{1F642}", "🙂", true],
["\\x41", "A", true],
["\\101", "A", true],
["\\0", "\u0000", true],
["[\\d\\s]+", "1 2", true],
["^[\\D]$", "x", true],
["^[^\\S]$", " ", true],
["\\bfoo\\b", "a foo.", true],
["\\bé", " é", false],
["^.$", "🙂", true],
["^..$", "🙂", false],
["\\!\\#", "!#", true],
["[a\\-z]", "-", true],
["x*?y", "xxy", true],
["(?U)x*y", "xxy", true],
["(?P\u003cn\u003eab)+", "abab", true],
["a(?s:.)b", "a\nb", true],
["(?m:^)b", "a\nb", true],
["^\\w+$", "abc_9", true],
["^\\w+$", "é", false],
["[[:word:]]", "_", true],
["\\pN", "٣", true],
["^\\S+$", "a b", true],
["$", "", true],
["", "x", true],
["[^\\x00-\\x{10FFFF}]", "a", false],
["\\a", "\u0007", true],
];

test("RE2 semantics: every case answers as Go's regexp does", () => {
  for (const [pattern, input, want] of cases) {
    assert.equal(compileRE2(pattern).test(input), want, `${JSON.stringify(pattern)} on ${JSON.stringify(input)}`);
  }
});

test("patterns RE2 rejects are rejected; constructs outside the subset are named", () => {
  for (const p of ["(?=a)", "(?!a)", "(?<=a)", "\\1", "a**", "a{1001}", "\\C", "(?P=n)", "x{2}{3}", "\\8", "(a", "a)", "[a", "\\"]) {
    assert.throws(() => compileRE2(p), InvalidPatternError, p);
  }
  assert.throws(() => compileRE2("(?i:A)b"), UnsupportedPatternError);
  assert.throws(() => compileRE2("a(?i)b"), /only at the start/);
  assert.throws(() => compileRE2("(?i)\\bx"), UnsupportedPatternError);
});

test("a rule whose pattern cannot run here answers error/general only when reached", () => {
  const snap = Snapshot.of(1, [
    {
      key: "f",
      variants: { off: false, on: true },
      control: "off",
      enabled: true,
      rules: [
        { variant: "on", when: [{ attribute: "plan", op: "in", values: ["gold"] }] },
        { variant: "on", when: [{ attribute: "email", op: "matches", values: ["@example\\.com$", "(?i:X)y"] }] },
      ],
    },
  ]);
  assert.equal(snap.warnings().length, 1);
  assert.match(snap.warnings()[0]!, /flag f: rules\[1\]\.when\[0\]: values\[1\]: pattern "\(\?i:X\)y" is outside the RE2 subset/);
  assert.equal(snap.evaluate("f", { key: "u", attributes: { plan: "gold" } }).reason, "targeting_match");
  assert.equal(snap.evaluate("f", { key: "u", attributes: { email: "a@example.com" } }).reason, "targeting_match");
  assert.equal(snap.evaluate("f", { key: "u", attributes: {} }).reason, "default");
  const d = snap.evaluate("f", { key: "u", attributes: { email: "a@example.org" } });
  assert.deepEqual([d.reason, d.errorType, d.variant], ["error", "general", ""]);
});
