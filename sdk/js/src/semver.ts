// Semantic versions as the Go reference reads them: Masterminds semver v3's
// NewVersion, which is loose ("1.2" is 1.2.0, "v" may lead, leading zeros in
// the numbers are accepted) and compares pre-releases identifier by
// identifier, numbers below words. Build metadata never changes the order.

const LOOSE = /^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?(\+([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$/;
const MAX_VERSION_LEN = 256;
const MAX_UINT64 = 0xffffffffffffffffn;

/** A parsed semantic version. */
export interface Version {
  readonly major: bigint;
  readonly minor: bigint;
  readonly patch: bigint;
  /** the pre-release identifiers, "" when there are none */
  readonly pre: string;
}

function segment(s: string | undefined): bigint | undefined {
  if (s === undefined || s === "") return 0n;
  const n = BigInt(s.startsWith(".") ? s.slice(1) : s);
  return n > MAX_UINT64 ? undefined : n;
}

/** Parses a version, or returns undefined where Go's NewVersion errs. */
export function parseVersion(s: string): Version | undefined {
  if (s.length > MAX_VERSION_LEN) return undefined; // the regexp admits ASCII only, so length is bytes
  const m = LOOSE.exec(s);
  if (m === null) return undefined;
  const major = segment(m[1]);
  const minor = segment(m[2]);
  const patch = segment(m[3]);
  if (major === undefined || minor === undefined || patch === undefined) return undefined;
  const pre = m[5] ?? "";
  if (pre !== "") {
    for (const part of pre.split(".")) {
      if (/^[0-9]+$/.test(part) && part.length > 1 && part[0] === "0") return undefined;
    }
  }
  return { major, minor, patch, pre };
}

/** Compares two versions: -1, 0 or 1. */
export function compareVersions(a: Version, b: Version): number {
  if (a.major !== b.major) return a.major < b.major ? -1 : 1;
  if (a.minor !== b.minor) return a.minor < b.minor ? -1 : 1;
  if (a.patch !== b.patch) return a.patch < b.patch ? -1 : 1;
  if (a.pre === "" && b.pre === "") return 0;
  if (a.pre === "") return 1;
  if (b.pre === "") return -1;
  const as = a.pre.split(".");
  const bs = b.pre.split(".");
  const n = Math.max(as.length, bs.length);
  for (let i = 0; i < n; i++) {
    const d = comparePart(as[i] ?? "", bs[i] ?? "");
    if (d !== 0) return d;
  }
  return 0;
}

// asUint mirrors strconv.ParseUint(s, 10, 64): digits only, within range.
function asUint(s: string): bigint | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  return n > MAX_UINT64 ? undefined : n;
}

function comparePart(s: string, o: string): number {
  if (s === o) return 0;
  if (s === "") return -1;
  if (o === "") return 1;
  const oi = asUint(o);
  const si = asUint(s);
  if (oi === undefined && si === undefined) return s > o ? 1 : -1; // ASCII, so code unit order is byte order
  if (oi === undefined) return -1;
  if (si === undefined) return 1;
  return si > oi ? 1 : -1;
}
