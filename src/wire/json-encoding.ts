import { brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib';
import { DepotsyncError } from '../errors.js';

/**
 * Brotli on the read API's JSON (docs/wire-formats.md, "Compressed metadata"): TUF metadata,
 * manifests, the revocation list, and the body of a chunk delta request. Brotli because every Node
 * has it (the agent carries no native zstd), and these small texts of hex digits and repeated keys
 * shrink 2–10 ×. Negotiated both ways so that old peers see nothing new:
 *  - a client sends `accept-encoding: br`; the server answers `content-encoding: br` only then, and
 *    only when that is smaller;
 *  - a server that reads compressed request bodies says so with `x-depotsync-request-encoding: br` on
 *    its timestamp answer; a client compresses a request body only after seeing it.
 * Encoding carries no trust: the receiver decodes with the same length cap the plain bytes had, and
 * then verifies the signed bytes exactly as before.
 */
export const REQUEST_ENCODING_HEADER = 'x-depotsync-request-encoding';
export const BR = 'br';

/** `accept-encoding` (or `x-depotsync-request-encoding`) lists br. */
export function acceptsBr(header: string | string[] | undefined): boolean {
  const h = Array.isArray(header) ? header.join(',') : (header ?? '');
  return /(^|[\s,])br($|[\s,;])/.test(h);
}

/** Highest quality up to 64 KiB (a few ms), a fast one above (a 1 GiB package's manifest is ~700 KB). */
export function brEncode(plain: Uint8Array): Buffer {
  return brotliCompressSync(plain, {
    params: {
      [zlib.BROTLI_PARAM_QUALITY]: plain.length <= 64 * 1024 ? 11 : 5,
      [zlib.BROTLI_PARAM_SIZE_HINT]: plain.length,
      [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT,
    },
  });
}

/**
 * Decode a body that came with `content-encoding` `encoding` (undefined or identity: as it is), to at
 * most `maxBytes` plain bytes: the cap the caller had for the plain body (a bomb stops there).
 */
export function decodeBody(
  body: Buffer,
  encoding: string | string[] | undefined,
  maxBytes: number,
  what: string,
): Buffer {
  const enc = (Array.isArray(encoding) ? encoding.join(',') : (encoding ?? '')).trim().toLowerCase();
  if (enc === '' || enc === 'identity') return body;
  if (enc !== BR)
    throw new DepotsyncError('corrupt', `${what}: content-encoding ${JSON.stringify(enc.slice(0, 40))}`, {
      hint: 'only br is asked for; the server or a proxy on the way altered the answer',
    });
  try {
    return brotliDecompressSync(body, { maxOutputLength: Math.max(1, maxBytes) });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError)
      throw new DepotsyncError(
        'too-large',
        `${what}: brotli body decodes to more than the limit of ${maxBytes} bytes`,
        { hint: 'the sender is broken or hostile; nothing of it was kept', cause: e },
      );
    throw new DepotsyncError('corrupt', `${what}: brotli body does not decode (${(e as Error).message})`, {
      hint: 'the answer was damaged on the way; nothing of it was kept',
      cause: e,
    });
  }
}
