import { DepotsyncError } from '../errors.js';
import { digestEquals } from '../hash/blake3.js';
import { hashedChunk, type ChunkInput } from '../store/chunk-id.js';
import { plainBytes, type ChunkEncoding } from '../store/encoding.js';

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

/**
 * A received record (as sent: plain bytes or a zstd frame) checked against the chunk the manifest
 * lists: a frame is decoded with the listed length as a hard cap and must come out exactly that long
 * (else a typed error: 'too-large' for a bomb, 'corrupt' or 'truncated' for a damaged or cut frame),
 * and the plain bytes must hash to the id (else undefined, like `verifiedChunk`). The chunk returned
 * carries the frame, so the store keeps it as it came. `senderCompresses`: the sender stores compressed
 * chunks (format 2), so a plain record is one compression did not pay for: it is stored plain without
 * trying again.
 */
export function receivedChunk(
  need: { id: string; length: number },
  encoding: ChunkEncoding,
  bytes: Uint8Array,
  declaredPlainLength: number,
  source: string,
  senderCompresses = false,
): ChunkInput | undefined {
  if (encoding === 'plain') {
    if (bytes.length !== need.length) return undefined;
    if (!senderCompresses) return verifiedChunk(need.id, bytes);
    const chunk = hashedChunk(bytes, null);
    return digestEquals(chunk.id, need.id) ? chunk : undefined;
  }
  if (declaredPlainLength !== need.length) return undefined;
  const plain = plainBytes(encoding, bytes, need.length, `chunk ${need.id} from ${source}`);
  const chunk = hashedChunk(plain, bytes);
  return digestEquals(chunk.id, need.id) ? chunk : undefined;
}
