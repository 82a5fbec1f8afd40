// The `matches` operator takes RE2 syntax, as Go's regexp implements it. A
// JavaScript RegExp reads the same text differently in places ("." stops at
// "\r" and U+2028, "\s" covers Unicode spaces, "[]a]" is an empty class,
// "\Q..\E" and "[[:alpha:]]" do not exist) and accepts what RE2 refuses
// (look-arounds, back-references). So a pattern is translated, construct by
// construct, into a RegExp with the "u" flag that accepts exactly the same
// strings. What RE2 refuses is refused with an InvalidPatternError, and a
// valid pattern outside the supported subset with an
// UnsupportedPatternError rather than run with a different meaning.
//
// Supported: literals and escapes (\a \f \t \n \r \v, \x7F, \x{10FFFF},
// octal, escaped punctuation, \Q...\E), ".", "^", "$", \A, \z, \b, \B, the
// Perl classes \d \s \w and their negations, \pN, \p{Greek}, \PL, \p{^L},
// bracket classes with ranges, negation and [:posix:] classes, groups
// ((?:...), (?P<name>...), (?<name>...)), alternation, *, +, ?, {n},
// {n,}, {n,m} (lazy or not), and the flags i (only for the whole pattern,
// as a leading "(?i)"), m, s and U anywhere. Under (?i), \b, \B and \W are
// refused: JavaScript folds the word characters they test (so "ſ" and the
// Kelvin sign count as word characters), RE2 does not.

/** A valid RE2 pattern that this SDK cannot run with the same meaning. */
export class UnsupportedPatternError extends Error {
  override name = "UnsupportedPatternError";
}

/** A pattern that is not valid RE2: Go's regexp refuses it too. */
export class InvalidPatternError extends Error {
  override name = "InvalidPatternError";
}

interface Flags {
  m: boolean;
  s: boolean;
}

const MAX_CP = 0x10ffff;
type Range = [number, number];

const PERL: Record<string, Range[]> = {
  d: [[0x30, 0x39]],
  s: [[0x09, 0x0a], [0x0c, 0x0d], [0x20, 0x20]],
  w: [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]],
};

const POSIX: Record<string, Range[]> = {
  alnum: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]],
  alpha: [[0x41, 0x5a], [0x61, 0x7a]],
  ascii: [[0x00, 0x7f]],
  blank: [[0x09, 0x09], [0x20, 0x20]],
  cntrl: [[0x00, 0x1f], [0x7f, 0x7f]],
  digit: [[0x30, 0x39]],
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]],
  space: [[0x09, 0x0d], [0x20, 0x20]],
  upper: [[0x41, 0x5a]],
  word: [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]],
  xdigit: [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]],
};

// Go's general categories; any other \p name is a script.
const CATEGORIES = new Set([
  "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn",
  "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk",
  "Sm", "So", "Z", "Zl", "Zp", "Zs",
]);

function negate(rs: Range[]): Range[] {
  const sorted = [...rs].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= MAX_CP) out.push([next, MAX_CP]);
  return out;
}

function cp(c: number): string {
  return "\\u{" + c.toString(16) + "}";
}

function rangesSource(rs: Range[]): string {
  return rs.map(([lo, hi]) => (lo === hi ? cp(lo) : cp(lo) + "-" + cp(hi))).join("");
}

function unicodeClass(name: string, negated: boolean): string {
  if (name.startsWith("^")) {
    name = name.slice(1);
    negated = !negated;
  }
  let body: string;
  if (name === "Any") return negated ? "[^\\s\\S]" : "[\\s\\S]";
  if (CATEGORIES.has(name)) body = name;
  else if (/^[A-Za-z_]+$/.test(name)) body = "Script=" + name;
  else throw new InvalidPatternError(`unknown Unicode class \\p{${name}}`);
  return (negated ? "\\P{" : "\\p{") + body + "}";
}

/** A translated pattern, ready for new RegExp(source, flags). */
export interface Translated {
  source: string;
  flags: string;
}

/**
 * Translates an RE2 pattern (Go regexp syntax) into an equivalent
 * JavaScript pattern, or throws InvalidPatternError (not RE2) or
 * UnsupportedPatternError (RE2 outside the subset).
 */
export function translateRE2(pattern: string): Translated {
  return new Translator(pattern).run();
}

/**
 * Compiles an RE2 pattern to an equivalent RegExp, or throws
 * InvalidPatternError or UnsupportedPatternError.
 */
export function compileRE2(pattern: string): RegExp {
  const t = translateRE2(pattern);
  try {
    return new RegExp(t.source, t.flags);
  } catch (e) {
    throw new UnsupportedPatternError(`${(e as Error).message}`);
  }
}

class Translator {
  private i = 0;
  private out = "";
  private readonly cps: string[];
  private flags: Flags = { m: false, s: false };
  private readonly stack: Flags[] = [];
  private caseless = false;

  constructor(pattern: string) {
    this.cps = Array.from(pattern);
  }

  private peek(k = 0): string | undefined {
    return this.cps[this.i + k];
  }

  private fail(msg: string): never {
    throw new UnsupportedPatternError(`${msg} at offset ${this.i}`);
  }

  private invalid(msg: string): never {
    throw new InvalidPatternError(`${msg} at offset ${this.i}`);
  }

  run(): Translated {
    // A leading (?i...) may switch case folding on for the whole pattern.
    const lead = this.peekFlagGroup();
    if (lead !== undefined && lead.close === ")") {
      this.i += lead.length;
      if (lead.on.includes("i") && !lead.off.includes("i")) this.caseless = true;
      this.applyFlags(lead.on, lead.off);
    }
    while (this.i < this.cps.length) this.atom();
    if (this.stack.length > 0) this.invalid("missing closing )");
    return { source: this.out, flags: this.caseless ? "iu" : "u" };
  }

  // peekFlagGroup reads "(?flags)" or "(?flags:" at the cursor.
  private peekFlagGroup(): { on: string; off: string; close: string; length: number } | undefined {
    if (this.peek() !== "(" || this.peek(1) !== "?") return undefined;
    let k = 2;
    let on = "";
    let off = "";
    let neg = false;
    for (;;) {
      const c = this.peek(k);
      if (c === undefined) return undefined;
      if (c === ")" || c === ":") {
        if (on === "" && off === "" && c === ")") return undefined;
        return { on, off, close: c, length: k + 1 };
      }
      if (c === "-") {
        if (neg) return undefined;
        neg = true;
      } else if ("imsU".includes(c)) {
        if (neg) off += c;
        else on += c;
      } else return undefined;
      k++;
    }
  }

  private applyFlags(on: string, off: string): void {
    if (on.includes("i") !== this.caseless && on.includes("i")) {
      this.fail("case-insensitive flag (?i) is supported only at the start of the pattern");
    }
    if (off.includes("i") && this.caseless) {
      this.fail("turning (?i) off inside the pattern is not supported");
    }
    this.flags = {
      m: on.includes("m") ? true : off.includes("m") ? false : this.flags.m,
      s: on.includes("s") ? true : off.includes("s") ? false : this.flags.s,
    };
    // U (ungreedy) swaps which repetitions are lazy; whether a string
    // matches at all does not depend on it, so it needs no translation.
  }

  private atom(): void {
    const c = this.cps[this.i]!;
    switch (c) {
      case "(":
        this.group();
        return;
      case ")":
        if (this.stack.length === 0) this.invalid("unexpected )");
        this.flags = this.stack.pop()!;
        this.out += ")";
        this.i++;
        this.quantifier();
        return;
      case "|":
        this.out += "|";
        this.i++;
        return;
      case ".":
        this.out += this.flags.s ? "[\\s\\S]" : "[^\\n]";
        this.i++;
        this.quantifier();
        return;
      case "^":
        this.out += this.flags.m ? "(?:^|(?<=\\n))" : "(?:^)";
        this.i++;
        this.quantifier();
        return;
      case "$":
        this.out += this.flags.m ? "(?:$|(?=\\n))" : "(?:$)";
        this.i++;
        this.quantifier();
        return;
      case "[":
        this.out += this.charClass();
        this.quantifier();
        return;
      case "\\":
        this.out += this.escape();
        this.quantifier();
        return;
      case "*":
      case "+":
      case "?":
        this.invalid(`missing argument to repetition operator ${c}`);
        break;
      case "{":
        if (this.repeatLength() > 0) this.invalid("missing argument to repetition operator {");
        this.out += "\\{";
        this.i++;
        this.quantifier();
        return;
      default:
        this.out += literal(c.codePointAt(0)!);
        this.i++;
        this.quantifier();
    }
  }

  private group(): void {
    const fg = this.peekFlagGroup();
    if (fg !== undefined) {
      this.i += fg.length;
      if (fg.close === ")") {
        // (?flags) changes the flags to the end of the enclosing group.
        this.applyFlags(fg.on, fg.off);
        return;
      }
      this.stack.push(this.flags);
      this.applyFlags(fg.on, fg.off);
      this.out += "(?:";
      return;
    }
    if (this.peek(1) === "?") {
      const rest = this.cps.slice(this.i + 2, this.i + 4).join("");
      let m: RegExpExecArray | null;
      const tail = this.cps.slice(this.i).join("");
      if (rest.startsWith(":")) {
        this.i += 3;
      } else if ((m = /^\(\?P?<([A-Za-z0-9_]+)>/.exec(tail)) !== null) {
        this.i += Array.from(m[0]).length;
      } else if (/^[=!]|^<[=!]/.test(rest)) {
        this.invalid("look-around assertions are not RE2");
      } else {
        this.invalid("invalid or unsupported group");
      }
    } else {
      this.i++;
    }
    this.stack.push(this.flags);
    this.out += "(?:";
  }

  // repeatLength returns the length of a {n}, {n,} or {n,m} repetition at
  // the cursor, or 0 when the brace is a literal (as RE2 reads "{" that
  // does not start a valid repetition).
  private repeatLength(): number {
    const tail = this.cps.slice(this.i, this.i + 24).join("");
    const m = /^\{([0-9]+)(,([0-9]*))?\}/.exec(tail);
    if (m === null) return 0;
    const lo = Number(m[1]);
    const hi = m[3] === undefined ? lo : m[3] === "" ? -1 : Number(m[3]);
    if (lo > 1000 || hi > 1000 || (hi >= 0 && hi < lo)) this.invalid("invalid repeat count");
    return m[0].length;
  }

  private quantifier(): void {
    const c = this.peek();
    let q = "";
    if (c === "*" || c === "+" || c === "?") {
      q = c;
      this.i++;
    } else if (c === "{") {
      const n = this.repeatLength();
      if (n === 0) return;
      q = this.cps.slice(this.i, this.i + n).join("");
      this.i += n;
    } else return;
    if (this.peek() === "?") {
      q += "?";
      this.i++;
    }
    const next = this.peek();
    if (next === "*" || next === "+" || next === "?" || (next === "{" && this.repeatLength() > 0)) {
      this.invalid("invalid nested repetition operator");
    }
    this.out += q;
  }

  // escape translates an escape outside a class. \Q...\E becomes a run of
  // literals.
  private escape(): string {
    const c = this.peek(1);
    if (c === undefined) this.invalid("trailing backslash");
    switch (c) {
      case "A":
        this.i += 2;
        return "(?:^)";
      case "z":
        this.i += 2;
        return "(?:$)";
      case "b":
      case "B":
        if (this.caseless) this.fail(`\\${c} with (?i): JavaScript folds the word characters it tests, RE2 does not`);
        // A group, so that a repetition after it stays legal in JavaScript.
        this.i += 2;
        return "(?:\\" + c + ")";
      case "Q": {
        this.i += 2;
        let s = "";
        while (this.i < this.cps.length) {
          if (this.peek() === "\\" && this.peek(1) === "E") {
            this.i += 2;
            break;
          }
          s += literal(this.cps[this.i]!.codePointAt(0)!);
          this.i++;
        }
        // The run is one atom per character; a repetition after it applies
        // to the last, as in RE2.
        return s;
      }
    }
    const cls = this.classEscape(false);
    if (cls !== undefined) return cls;
    return literal(this.charEscape());
  }

  // classEscape translates \d \s \w \D \S \W \p \P at the cursor, or
  // returns undefined when the escape is something else. Inside a class it
  // returns the body without brackets.
  private classEscape(inClass: boolean): string | undefined {
    const c = this.peek(1)!;
    const lower = c.toLowerCase();
    if (c === "W" && this.caseless) this.fail("\\W with (?i): JavaScript and RE2 fold it differently");
    if ((lower === "d" || lower === "s" || lower === "w") && PERL[lower]) {
      this.i += 2;
      const rs = c === lower ? PERL[lower]! : negate(PERL[lower]!);
      return inClass ? rangesSource(rs) : "[" + rangesSource(rs) + "]";
    }
    if (c === "p" || c === "P") {
      this.i += 2;
      let name: string;
      if (this.peek() === "{") {
        const close = this.cps.indexOf("}", this.i);
        if (close < 0) this.invalid("missing } in \\p{");
        name = this.cps.slice(this.i + 1, close).join("");
        this.i = close + 1;
      } else {
        const n = this.peek();
        if (n === undefined) this.invalid("missing class name after \\p");
        name = n;
        this.i++;
      }
      return unicodeClass(name, c === "P");
    }
    return undefined;
  }

  // charEscape reads an escape that stands for one character.
  private charEscape(): number {
    const c = this.peek(1)!;
    this.i += 2;
    switch (c) {
      case "a":
        return 0x07;
      case "f":
        return 0x0c;
      case "t":
        return 0x09;
      case "n":
        return 0x0a;
      case "r":
        return 0x0d;
      case "v":
        return 0x0b;
      case "x": {
        if (this.peek() === "{") {
          const close = this.cps.indexOf("}", this.i);
          const hex = close < 0 ? "" : this.cps.slice(this.i + 1, close).join("");
          if (!/^[0-9A-Fa-f]+$/.test(hex) || parseInt(hex, 16) > MAX_CP) this.invalid("invalid escape \\x{");
          this.i = close + 1;
          return parseInt(hex, 16);
        }
        const hex = (this.peek() ?? "") + (this.peek(1) ?? "");
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) this.invalid("invalid escape \\x");
        this.i += 2;
        return parseInt(hex, 16);
      }
    }
    if (c >= "0" && c <= "7") {
      // RE2: \0 and \1-\7 followed by an octal digit start an octal code of
      // up to three digits; a lone \1-\7 would be a back-reference.
      if (c !== "0" && !/[0-7]/.test(this.peek() ?? "")) this.invalid("back-references are not RE2");
      let digits = c;
      while (digits.length < 3 && /[0-7]/.test(this.peek() ?? "")) {
        digits += this.peek();
        this.i++;
      }
      return parseInt(digits, 8);
    }
    const code = c.codePointAt(0)!;
    if (code < 0x80 && !/[0-9A-Za-z]/.test(c)) return code; // escaped punctuation
    this.i -= 2;
    return this.invalid(`invalid escape \\${c}`);
  }

  private charClass(): string {
    this.i++; // [
    let negated = false;
    if (this.peek() === "^") {
      negated = true;
      this.i++;
    }
    const ranges: Range[] = [];
    const parts: string[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.invalid("missing closing ]");
      if (c === "]" && !first) break;
      first = false;
      if (c === "[" && this.peek(1) === ":") {
        const tail = this.cps.slice(this.i, this.i + 12).join("");
        const m = /^\[:(\^?)([a-z]+):\]/.exec(tail);
        if (m !== null && POSIX[m[2]!]) {
          this.i += m[0].length;
          ranges.push(...(m[1] ? negate(POSIX[m[2]!]!) : POSIX[m[2]!]!));
          continue;
        }
      }
      if (c === "\\") {
        const n = this.peek(1);
        if (n !== undefined && "dswDSW".includes(n)) {
          if (n === "W" && this.caseless) this.fail("\\W with (?i): JavaScript and RE2 fold it differently");
          const lower = n.toLowerCase();
          ranges.push(...(n === lower ? PERL[lower]! : negate(PERL[lower]!)));
          this.i += 2;
          continue;
        }
        if (n === "p" || n === "P") {
          parts.push(this.classEscape(true)!);
          continue;
        }
      }
      const lo = this.classChar();
      let hi = lo;
      if (this.peek() === "-" && this.peek(1) !== "]" && this.peek(1) !== undefined) {
        this.i++;
        hi = this.classChar();
        if (hi < lo) this.invalid("bad character class range");
      }
      ranges.push([lo, hi]);
    }
    this.i++; // ]
    const body = rangesSource(ranges) + parts.join("");
    if (body === "") return negated ? "[\\s\\S]" : "[^\\s\\S]";
    return (negated ? "[^" : "[") + body + "]";
  }

  private classChar(): number {
    const c = this.peek()!;
    if (c === "\\") {
      const n = this.peek(1);
      if (n === undefined) this.invalid("trailing backslash");
      if ("AzbBQEdswDSWpP".includes(n)) this.invalid(`invalid escape \\${n} in a character class`);
      return this.charEscape();
    }
    this.i++;
    return c.codePointAt(0)!;
  }
}

// literal renders one code point so that it means itself anywhere in a
// "u"-mode pattern.
function literal(c: number): string {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f) {
    return String.fromCodePoint(c);
  }
  if (c < 0x80 && "^$\\.*+?()[]{}|/".includes(String.fromCharCode(c))) return "\\" + String.fromCharCode(c);
  if (c < 0x20 || c === 0x7f) return cp(c);
  if (c < 0x80) return String.fromCharCode(c);
  return cp(c);
}
