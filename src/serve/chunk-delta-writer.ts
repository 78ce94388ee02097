import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Logger } from '../log.js';
import type { ZstdDeltaSource } from '../deltas/source.js';
import { DELTA_CONTENT_TYPE, deltaRecords, type DeltaPair } from '../wire/chunk-delta.js';
import type { ServeEnv } from './env.js';
import { drainOrClose } from './outgoing.js';

/**
 * Answers `POST /v1/chunks/delta` (src/wire/chunk-delta.ts): each target as the difference from a base
 * the caller holds, chunks read through `load` (undefined for one not served); with `zstd` (the
 * caller accepts them and this server has a source), zstd deltas where they pay off; with `stored`
 * (the caller accepts them), whole chunks as the zstd frames the store holds where those are smaller;
 * with `chosen` too, deltas against bases the source chose by content where those are smaller still.
 */
export async function respondDelta(
  c: Context<ServeEnv>,
  pairs: readonly DeltaPair[],
  load: (id: string) => Promise<Buffer | undefined>,
  log: Logger,
  onServed?: (kind: 'chunk', bytes: number) => void,
  zstd?: ZstdDeltaSource,
  stored?: (id: string) => Promise<Buffer | undefined>,
  chosen = false,
): Promise<Response> {
  const records = deltaRecords(pairs, load, {
    ...(zstd
      ? { zstd: (p: DeltaPair, target: Buffer, base: Buffer) => zstd.frame(p.target, p.bases, target, base) }
      : {}),
    ...(zstd?.chosen && chosen ? { chosen: (p: DeltaPair) => zstd.chosen!(p.target, p.bases) } : {}),
    ...(stored ? { stored } : {}),
  });
  const outgoing = c.env?.outgoing;
  if (!outgoing) {
    const parts: Buffer[] = [];
    for await (const r of records) parts.push(r.record);
    return c.body(new Uint8Array(Buffer.concat(parts)), 200, { 'content-type': DELTA_CONTENT_TYPE });
  }
  // Straight to the socket with backpressure: at most CHUNK_DELTA_LIMITS.readAhead pairs in memory.
  outgoing.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
  try {
    for await (const r of records) {
      if (outgoing.destroyed) break;
      if (r.payloadBytes) onServed?.('chunk', r.payloadBytes);
      if (!outgoing.write(r.record)) await drainOrClose(outgoing);
    }
    outgoing.end();
  } catch (e) {
    // The status line is gone: cut the stream (the caller sees it truncated and fetches whole).
    log.error({ err: e }, 'chunk delta response failed part way');
    outgoing.destroy();
  }
  return RESPONSE_ALREADY_SENT;
}
