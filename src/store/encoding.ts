import { DepotsyncError } from '../errors.js';
import { zstdDecoder } from '../compress/zstd-decoder.js';

/**
 * How a chunk is held on disk and on the wire: its plain bytes, or one zstd frame of them (made once,
 * at publish or at the first put, and kept as is by every store and transfer after that). The id is
 * always the BLAKE3 of the plain bytes: a compressed form is trusted only once it decompresses, within
 * the plain length its manifest or index declares, to bytes that hash to the id.
 */
export type ChunkEncoding = 'plain' | 'zstd';

/** The byte that names an encoding in the index, pack records, batch records and bundles. */
export const ENCODING_CODE: Readonly<Record<ChunkEncoding, number>> = { plain: 0, zstd: 1 };

export function encodingFromCode(code: number, what: string): ChunkEncoding {
  if (code === 0) return 'plain';
  if (code === 1) return 'zstd';
  throw new DepotsyncError('bad-input', `${what}: unknown chunk encoding ${code}`, {
    hint: 'the sender runs a newer depotsync; upgrade this one',
  });
}

/** Default zstd level of chunks (bench/README.md, "Real-world deltas"). */
export const DEFAULT_CHUNK_LEVEL = 3;

/**
 * The plain bytes of a stored or received form: a zstd frame is decoded with `plainLength` as a hard
 * cap and must come out exactly that long (a bomb stops at the cap: 'too-large'; a damaged frame is
 * 'corrupt', a cut one 'truncated'). The caller still checks the hash of the result against the id.
 */
export function plainBytes(
  encoding: ChunkEncoding,
  bytes: Uint8Array,
  plainLength: number,
  what: string,
): Uint8Array {
  if (encoding === 'plain') {
    if (bytes.length !== plainLength)
      throw new DepotsyncError('corrupt', `${what}: ${bytes.length} bytes, expected ${plainLength}`);
    return bytes;
  }
  try {
    return zstdDecoder().decompress(bytes, { maxBytes: plainLength, exact: true });
  } catch (e) {
    if (e instanceof DepotsyncError)
      throw new DepotsyncError(e.code, `${what}: ${e.message}`, {
        hint: e.hint ?? 'the compressed record is damaged; it is fetched again',
        cause: e,
      });
    throw e;
  }
}
