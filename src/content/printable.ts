/**
 * Quote an untrusted value for an error message or a log line.
 *
 * Threat: a hostile manifest or request puts terminal escape sequences, bidi overrides (U+202E) or
 * newlines in a path or name so that the operator reads a different message than the one printed
 * (log injection, spoofed file names). Everything JSON would escape is escaped, and so is every
 * control, format, private-use, unassigned or line/paragraph separator character (\p{C}, \p{Zl},
 * \p{Zp}), as \uXXXX. Long values are cut so that one bad field cannot flood the log.
 */
const UNSAFE = /[\p{C}\p{Zl}\p{Zp}]/gu;

export function printable(value: unknown, maxChars = 160): string {
  if (typeof value !== 'string') {
    if (value === undefined) return 'undefined';
    if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
    if (Array.isArray(value)) return 'an array';
    return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
  }
  const cut = value.length > maxChars ? value.slice(0, maxChars) : value;
  const quoted = JSON.stringify(cut).replace(UNSAFE, (c) => {
    let out = '';
    for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  });
  return value.length > maxChars ? `${quoted}… (${value.length} characters)` : quoted;
}
