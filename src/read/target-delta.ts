import { createHash, timingSafeEqual } from 'node:crypto';
import { loadZstdDecoder } from '../compress/zstd-decoder.js';
import { DepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { fatalRefusal } from './refusal.js';

/** A target file as the signed catalog lists it: served name `{sha256}.{path}`, length, SHA-256. */
export interface SignedTarget {
  name: string;
  length: number;
  sha256: string;
}

/** A target the reader holds (the previous version's manifest): its served name and bytes. */
export interface TargetBase {
  name: string;
  bytes: Buffer;
}

/** How a delta is asked for: ReadClient.targetDelta, or an upstream that wraps it. */
export type TargetDeltaGet = (
  base: string,
  name: string,
  maxBytes: number,
  what: string,
) => Promise<{ kind: 'delta' | 'full'; bytes: Buffer; wireBytes?: number }>;

/** A whole target, with the bytes it took on the wire when they differ (sent brotli-compressed). */
export type TargetWhole = Buffer | { bytes: Buffer; wireBytes: number };

export interface TargetFetched {
  /** The target's bytes, exactly the length and SHA-256 the catalog signed. */
  bytes: Buffer;
  /** Bytes received for it (the delta, plus the whole target after a failed delta). */
  wireBytes: number;
  /** True when the bytes were rebuilt from a delta. */
  viaDelta: boolean;
}

/** Exactly the signed length and SHA-256, or a typed 'hash-mismatch' (a substituted or damaged file). */
export function checkSignedTarget(bytes: Uint8Array, t: SignedTarget, what: string): void {
  if (bytes.length !== t.length)
    throw new DepotsyncError(
      'hash-mismatch',
      `${what}: ${bytes.length} bytes, but the signed catalog says ${t.length}`,
    );
  const got = createHash('sha256').update(bytes).digest();
  if (!timingSafeEqual(got, Buffer.from(t.sha256, 'hex')))
    throw new DepotsyncError('hash-mismatch', `${what}: its SHA-256 does not match the signed catalog`);
}

/**
 * Target `t` as a delta against `base` (`GET /v1/targets-delta`), verified exactly as a whole download
 * is: the answer capped at the signed length, decoded with that length as the hard cap of the output,
 * then its length and SHA-256 checked against the signed catalog. Any failure of the delta (no such
 * route, base not held upstream, a frame that is damaged, cut short, too long or decodes to other
 * bytes) is logged and the target is fetched whole with `full`; a refused certificate ends it at once.
 * A base that is the target itself (same served name) is used as it is once it passes the same checks.
 * Nothing unverified is returned.
 */
export async function fetchTargetWithDelta(
  t: SignedTarget,
  base: TargetBase | undefined,
  get: TargetDeltaGet | undefined,
  full: () => Promise<TargetWhole>,
  what: string,
  log: Logger,
): Promise<TargetFetched> {
  let wireBytes = 0;
  if (base && base.name === t.name) {
    // The caller already holds this very file (the same version again): nothing to download.
    try {
      checkSignedTarget(base.bytes, t, `${what} (held)`);
      return { bytes: base.bytes, wireBytes: 0, viaDelta: false };
    } catch (e) {
      log.warn({ target: t.name, err: (e as Error).message }, 'held manifest differs; fetching it whole');
    }
  } else if (base && get) {
    try {
      const answer = await get(base.name, t.name, t.length, `${what} (delta)`);
      wireBytes += answer.wireBytes ?? answer.bytes.length;
      // The decoder, not zstd.ts: agents may run without the native addon.
      const zstd = answer.kind === 'delta' ? await loadZstdDecoder() : undefined;
      const bytes = zstd
        ? zstd.applyDelta(base.bytes, answer.bytes, { maxBytes: t.length, exact: true })
        : answer.bytes;
      checkSignedTarget(bytes, t, `${what} (rebuilt from a delta against ${base.name})`);
      log.debug(
        {
          target: t.name,
          base: base.name,
          wireBytes: answer.wireBytes ?? answer.bytes.length,
          length: t.length,
          ...(zstd ? { zstd: zstd.implementation } : {}),
        },
        answer.kind === 'delta' ? 'manifest rebuilt from a delta' : 'manifest delta not smaller: sent whole',
      );
      return { bytes, wireBytes, viaDelta: answer.kind === 'delta' };
    } catch (e) {
      if (fatalRefusal(e)) throw e;
      log.warn(
        { target: t.name, base: base.name, err: (e as Error)?.message ?? String(e) },
        'manifest delta failed; fetching the manifest whole',
      );
    }
  }
  const whole = await full();
  const bytes = Buffer.isBuffer(whole) ? whole : whole.bytes;
  const wire = Buffer.isBuffer(whole) ? whole.length : whole.wireBytes;
  return { bytes, wireBytes: wireBytes + wire, viaDelta: false };
}
