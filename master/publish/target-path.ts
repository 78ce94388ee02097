/**
 * The TUF target path of a package version: `{name}@{version}.json`. Names and versions are validated
 * (src/content/paths.ts) so the path has no `/`; the consistent-snapshot file is `{sha256}.{path}`.
 */
export function targetPathOf(name: string, version: string): string {
  return `${name}@${version}.json`;
}
