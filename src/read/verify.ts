import { DepotsyncError } from '../errors.js';
import { digestEquals } from '../hash/blake3.js';
import { hashedChunk, type ChunkInput } from '../store/chunk-id.js';

/**
 * Threat: a mirror, a bundle file, a damaged disk or link delivering bytes that are not the chunk asked
 * for. The chunk (its BLAKE3 computed here) when its bytes hash to `id`, else undefined. The one check
 * every chunk passes before it is stored or written, online or offline (compared in constant time).
 */
export function verifiedChunk(id: string, data: Uint8Array): ChunkInput | undefined {
  const chunk = hashedChunk(data);
  return digestEquals(chunk.id, id) ? chunk : undefined;
}

/**
 * `verifiedChunk` that also checks the length the manifest lists, throwing 'hash-mismatch' naming
 * `source`. The id itself is a leaf of the signed hash tree: decoding the manifest rebuilt the tree
 * from its chunk list and refused it unless the root is the one the catalog signed, so proving each
 * leaf again per chunk would check the same thing a second time.
 */
export function checkChunk(
  need: { id: string; length: number },
  data: Uint8Array,
  source: string,
): ChunkInput {
  const hint =
    'the source serves damaged or forged content; the chunk is asked for again or from another source';
  if (data.length !== need.length) {
    throw new DepotsyncError(
      'hash-mismatch',
      `chunk ${need.id} from ${source}: ${data.length} bytes, the manifest lists ${need.length}`,
      { hint },
    );
  }
  const chunk = hashedChunk(data);
  if (!digestEquals(chunk.id, need.id)) {
    throw new DepotsyncError(
      'hash-mismatch',
      `chunk ${need.id} from ${source}: its bytes hash to ${chunk.id}; not written`,
      { hint },
    );
  }
  return chunk;
}
