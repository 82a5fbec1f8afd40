// Conversions that must give exactly the answers of the Go reference
// implementation (sdk/flag/eval.go), which uses Go's strconv and fmt. Where
// JavaScript's built-ins differ (String(1e21) is "1e+21", Number(" 0x10")
// is 16, trim() strips U+FEFF), these functions follow Go.

/** Reports whether the code point is white space to Go's unicode.IsSpace. */
function isGoSpace(c: number): boolean {
  switch (c) {
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d:
    case 0x20:
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
      return true;
  }
  return c >= 0x2000 && c <= 0x200a;
}

/** strings.TrimSpace. */
export function goTrimSpace(s: string): string {
  let i = 0;
  let j = s.length;
  while (i < j && isGoSpace(s.charCodeAt(i))) i++;
  while (j > i && isGoSpace(s.charCodeAt(j - 1))) j--;
  return i === 0 && j === s.length ? s : s.slice(i, j);
}

const DECIMAL = /^[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?$/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F_]*)(?:\.([0-9a-fA-F_]*))?[pP]([+-]?[0-9_]+)$/;

/**
 * strconv.ParseFloat(s, 64): returns the number, or undefined where Go
 * returns an error (bad syntax, or out of range: Go reports ±Inf from a
 * finite literal as an error). Go accepts "_" between digits, hexadecimal
 * mantissas with a "p" exponent, "inf", "infinity" and "nan".
 */
export function goParseFloat(s: string): number | undefined {
  if (s.length === 0) return undefined;
  const special = goSpecial(s);
  if (special !== undefined) return special;
  if (s.includes("_") && !underscoreOK(s)) return undefined;
  if (DECIMAL.test(s)) {
    const clean = s.replace(/_/g, "");
    if (!/[0-9]/.test(clean.split(/[eE]/)[0]!)) return undefined;
    const n = Number(clean);
    return Number.isFinite(n) ? n : undefined;
  }
  const m = HEX.exec(s);
  if (m === null) return undefined;
  const int = (m[2] ?? "").replace(/_/g, "");
  const frac = (m[3] ?? "").replace(/_/g, "");
  if (int.length + frac.length === 0) return undefined;
  const mant = BigInt("0x" + int + frac);
  let exp = Number((m[4] ?? "").replace(/_/g, "")) - 4 * frac.length;
  let n = Number(mant);
  // Scale in steps that stay exact until the last one, so that a result
  // in the subnormal range is rounded once.
  while (n !== 0 && Number.isFinite(n) && exp !== 0) {
    const step = Math.max(-1000, Math.min(1000, exp));
    n *= Math.pow(2, step);
    exp -= step;
  }
  if (!Number.isFinite(n)) return undefined;
  return m[1] === "-" ? -n : n;
}

// goSpecial recognizes Go's "inf", "infinity" (both with an optional sign)
// and "nan", ignoring case.
function goSpecial(s: string): number | undefined {
  const l = s.toLowerCase();
  switch (l) {
    case "inf":
    case "+inf":
    case "infinity":
    case "+infinity":
      return Infinity;
    case "-inf":
    case "-infinity":
      return -Infinity;
    case "nan":
      return NaN;
  }
  return undefined;
}

// underscoreOK is Go's rule for digit separators: only with a base prefix,
// and each underscore between two digits or between the prefix and a digit.
function underscoreOK(s: string): boolean {
  let saw = "^"; // '^' start, '0' digit or prefix, '_' underscore, '!' other
  let i = 0;
  if (s.length >= 1 && (s[0] === "-" || s[0] === "+")) s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === "0" && "xXbBoO".includes(s[1]!)) {
    i = 2;
    saw = "0";
    hex = s[1] === "x" || s[1] === "X";
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= "0" && c <= "9") || (hex && /[a-fA-F]/.test(c))) {
      saw = "0";
      continue;
    }
    if (c === "_") {
      if (saw !== "0") return false;
      saw = "_";
      continue;
    }
    if (saw === "_") return false;
    saw = "!";
  }
  return saw !== "_";
}

/**
 * strconv.FormatFloat(n, 'f', -1, 64): the shortest decimal that reads back
 * as n, never in exponent notation.
 */
export function goFormatFloatF(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  if (n === 0) return Object.is(n, -0) ? "-0" : "0";
  const s = String(n);
  const e = s.indexOf("e");
  if (e < 0) return s;
  const { neg, digits, point } = decompose(s);
  let out: string;
  if (point <= 0) out = "0." + "0".repeat(-point) + digits;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = digits.slice(0, point) + "." + digits.slice(point);
  return neg ? "-" + out : out;
}

// decompose splits JavaScript's shortest rendering of a finite non-zero
// number into its significant digits and the position of the decimal point
// (value = 0.digits × 10^point).
function decompose(s: string): { neg: boolean; digits: string; point: number } {
  let neg = false;
  if (s[0] === "-") {
    neg = true;
    s = s.slice(1);
  }
  let exp = 0;
  const e = s.indexOf("e");
  if (e >= 0) {
    exp = Number(s.slice(e + 1));
    s = s.slice(0, e);
  }
  const dot = s.indexOf(".");
  const intPart = dot >= 0 ? s.slice(0, dot) : s;
  const frac = dot >= 0 ? s.slice(dot + 1) : "";
  let digits = intPart + frac;
  let point = intPart.length + exp;
  const lead = digits.length - digits.replace(/^0+/, "").length;
  digits = digits.slice(lead);
  point -= lead;
  digits = digits.replace(/0+$/, "");
  return { neg, digits, point };
}

/**
 * fmt's %v of a float64, strconv.FormatFloat(n, 'g', -1, 64): exponent
 * notation when the decimal exponent is below -4 or at least 6 (1e6 prints
 * as "1e+06").
 */
function goFormatFloatG(n: number): string {
  if (!Number.isFinite(n) || n === 0) return goFormatFloatF(n);
  const { neg, digits, point } = decompose(String(n));
  const exp = point - 1;
  const out = exp < -4 || exp >= 6 ? fmtE(digits, exp) : goFormatFloatF(Math.abs(n));
  return neg ? "-" + out : out;
}

function fmtE(digits: string, exp: number): string {
  const mant = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
  const sign = exp < 0 ? "-" : "+";
  const a = Math.abs(exp);
  return mant + "e" + sign + (a < 10 ? "0" + a : String(a));
}

/**
 * fmt.Sprint of a value decoded from JSON: what Go's evaluation does with an
 * attribute that is not a string, number or boolean (lists and objects).
 */
export function goSprint(v: unknown): string {
  if (v === null || v === undefined) return "<nil>";
  switch (typeof v) {
    case "string":
      return v;
    case "boolean":
      return v ? "true" : "false";
    case "number":
      return goFormatFloatG(v);
    case "bigint":
      return v.toString();
  }
  if (Array.isArray(v)) return "[" + v.map(goSprint).join(" ") + "]";
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).sort(compareUTF8);
    return "map[" + keys.map((k) => k + ":" + goSprint(o[k])).join(" ") + "]";
  }
  return String(v);
}

/** Compares strings by their UTF-8 bytes, as Go orders strings. */
export function compareUTF8(a: string, b: string): number {
  // Code point order equals UTF-8 byte order; UTF-16 code unit order differs
  // only when surrogates meet code points above U+D7FF.
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}
