import type { Manifest } from '../../src/content/manifest.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import type { ChunkWant } from '../../src/read/chunk-download.js';

/** One distinct chunk of the package (id and length) and every place it is written. */
export interface ChunkNeed extends ChunkWant {
  places: Array<{ fileIndex: number; offset: number }>;
}

/** The distinct chunks of a manifest (a chunk repeated in the package is downloaded once). */
export function planChunks(m: Manifest): ChunkNeed[] {
  const byId = new Map<string, ChunkNeed>();
  m.files.forEach((f, fileIndex) => {
    let offset = 0;
    for (const c of f.chunks) {
      const need = byId.get(c.id);
      if (need) need.places.push({ fileIndex, offset });
      else byId.set(c.id, { id: c.id, length: c.length, places: [{ fileIndex, offset }] });
      offset += c.length;
    }
  });
  return [...byId.values()];
}

/** The fetch's error when chunks are left that no source delivered verified, naming each source's reason. */
export function noSourceLeft(
  needs: readonly ChunkNeed[],
  sources: readonly { name: string }[],
  failed: ReadonlyMap<string, unknown>,
  lacking: ReadonlySet<string>,
): DepotsyncError {
  const reasons = sources.map(
    (s) =>
      `${s.name}: ${failed.has(s.name) ? (failed.get(s.name) as Error).message : lacking.has(s.name) ? 'does not have it' : 'not tried'}`,
  );
  const first = [...failed.values()][0];
  const code = isDepotsyncError(first) ? first.code : lacking.size ? 'not-found' : 'network';
  return new DepotsyncError(
    code,
    `chunk ${needs[0]?.id} (and ${needs.length - 1} more): no source could deliver it verified (${reasons.join('; ')})`,
    {
      hint: 'the chunks verified so far are cached; run the fetch again when a depot or the master is reachable',
      cause: first,
    },
  );
}
