import { Counter, Histogram, type Registry } from 'prom-client';
import { newRegistry } from './registry.js';

/**
 * The depot's sync and serving counters. One set per process (a depot process runs one depot), kept in
 * a process registry the depot's `/metrics` also exposes; the sync engine records into it without being
 * handed anything. Gauges that read the depot's state (served generation, lag, certificate, scrub) are
 * built per app in depot/serve/metrics.ts.
 */
export interface DepotCounters {
  registry: Registry;
  syncRuns: Counter<'outcome'>;
  syncDuration: Histogram<'outcome'>;
  fetchedBytes: Counter;
  fetchedChunks: Counter;
  fetchedChunkPlainBytes: Counter;
  servedBytes: Counter<'kind'>;
  servedChunkPlainBytes: Counter;
  servedChunks: Counter;
}

let counters: DepotCounters | undefined;

export function depotCounters(): DepotCounters {
  if (counters) return counters;
  const registry = newRegistry();
  counters = {
    registry,
    syncRuns: new Counter({
      name: 'depotsync_depot_sync_runs_total',
      help: 'Depot syncs finished, by outcome (ok, noop, failed)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    syncDuration: new Histogram({
      name: 'depotsync_depot_sync_duration_seconds',
      help: 'Depot sync duration, by outcome',
      labelNames: ['outcome'],
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
      registers: [registry],
    }),
    fetchedBytes: new Counter({
      name: 'depotsync_depot_fetched_bytes_total',
      help: 'Bytes received from the upstream by syncs (metadata, manifests, chunks)',
      registers: [registry],
    }),
    fetchedChunks: new Counter({
      name: 'depotsync_depot_fetched_chunks_total',
      help: 'Chunks received and stored by syncs',
      registers: [registry],
    }),
    fetchedChunkPlainBytes: new Counter({
      name: 'depotsync_depot_fetched_chunk_plain_bytes_total',
      help: 'Plain (decompressed) bytes of the chunks syncs stored; fetched_bytes counts what the wire carried',
      registers: [registry],
    }),
    servedBytes: new Counter({
      name: 'depotsync_served_bytes_total',
      help: 'Bytes served to agents and child depots, as sent (chunks compressed where sent so), by kind (chunk, metadata, target)',
      labelNames: ['kind'],
      registers: [registry],
    }),
    servedChunkPlainBytes: new Counter({
      name: 'depotsync_served_chunk_plain_bytes_total',
      help: 'Plain (decompressed) bytes of the chunks served',
      registers: [registry],
    }),
    servedChunks: new Counter({
      name: 'depotsync_served_chunks_total',
      help: 'Chunks served to agents and child depots',
      registers: [registry],
    }),
  };
  return counters;
}

/** Record one finished sync (called by the sync engine). */
export function recordSync(
  outcome: 'ok' | 'noop' | 'failed',
  durationMs: number,
  chunks: number,
  bytes: number,
  chunkPlainBytes = 0,
): void {
  const c = depotCounters();
  c.syncRuns.inc({ outcome });
  c.syncDuration.observe({ outcome }, durationMs / 1000);
  if (bytes > 0) c.fetchedBytes.inc(bytes);
  if (chunks > 0) c.fetchedChunks.inc(chunks);
  if (chunkPlainBytes > 0) c.fetchedChunkPlainBytes.inc(chunkPlainBytes);
}
