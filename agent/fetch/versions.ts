/**
 * Which version is "latest" when `agent fetch NAME` names no version.
 *
 * Versions are cut into runs of digits, of letters and of other characters (`128.0.1-beta2` →
 * 128 . 0 . 1 - beta 2). Runs are compared left to right: two digit runs by numeric value
 * (so 1.10 > 1.9, and leading zeros do not matter), otherwise by code unit order; a digit run sorts
 * above a non-digit run (1.0.1 > 1.0.beta). When one version is a prefix of the other, the longer one
 * is higher (1.0.1 > 1.0, and also 1.0-rc1 > 1.0: this is not semver pre-release ordering;
 * publish pre-releases under another name, or fetch them with an explicit @VERSION).
 * Equal comparisons (1.01 vs 1.1) fall back to plain string order, so the result is total.
 */
const RUN = /\d+|[A-Za-z]+|[^A-Za-z\d]+/g;

export function compareVersions(a: string, b: string): number {
  const x = a.match(RUN) ?? [];
  const y = b.match(RUN) ?? [];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i] as string;
    const q = y[i] as string;
    const pd = /^\d/.test(p);
    const qd = /^\d/.test(q);
    if (pd && qd) {
      const c = compareDigits(p, q);
      if (c !== 0) return c;
    } else if (pd !== qd) {
      return pd ? 1 : -1;
    } else if (p !== q) {
      return p < q ? -1 : 1;
    }
  }
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Numeric order of two digit strings of any length (no precision loss past 2^53). */
function compareDigits(p: string, q: string): number {
  const a = p.replace(/^0+(?=\d)/, '');
  const b = q.replace(/^0+(?=\d)/, '');
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The highest of `versions` by `compareVersions`, or undefined for an empty list. */
export function latestVersion(versions: Iterable<string>): string | undefined {
  let best: string | undefined;
  for (const v of versions) if (best === undefined || compareVersions(v, best) > 0) best = v;
  return best;
}
