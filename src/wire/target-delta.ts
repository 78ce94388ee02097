/**
 * `GET /v1/targets-delta/{base}/{name}` (docs/http.md, docs/wire-formats.md): a target file (a package
 * manifest) as one zstd frame made with another target, `base`, as its reference, the way
 * `zstd --patch-from=BASE` makes it; or, when no smaller frame was found, the target whole.
 */

/** The content type of a delta answer; a whole target comes as `application/json`. */
export const TARGET_DELTA_CONTENT_TYPE = 'application/zstd';

/** The answer's header naming the base a delta was made against. */
export const TARGET_DELTA_BASE_HEADER = 'x-depotsync-delta-base';

/** URL path of the delta of target `name` against target `base` (served names `{sha256}.{path}`). */
export function targetDeltaUrlPath(base: string, name: string): string {
  const enc = (n: string) => encodeURIComponent(n).replace(/%40/g, '@').replace(/%2B/g, '+');
  return `/v1/targets-delta/${enc(base)}/${enc(name)}`;
}
