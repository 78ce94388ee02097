import { existsSync, readFileSync } from 'node:fs';
import { certificateInfo, daysLeft } from '../src/pki/cert-info.js';
import { silentLogger } from '../src/log.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { configuredMasterUrls, loadDepotConfig } from './config.js';
import { unionUrls } from '../src/net/url-picker.js';
import { learntMasterUrls } from './sync/masters.js';
import { DepotDb } from './db/depot-db.js';
import { depotLayout } from './layout.js';
import { KV } from './sync/status-report.js';
import { currentWindow } from './offline/window.js';

/** What `depotsync status --dir D` shows for a depot (its own state, read-only). */
export interface DepotStatus {
  role: 'depot';
  name: string;
  upstream: string;
  master: string;
  /** Every master URL it uses, in order: configured, then those the signed depot directory lists. */
  masters: string[];
  enrollment: 'approved' | 'pending' | 'none';
  certificate?: { serial: string; notAfter: string; daysLeft: number };
  servedGeneration: number | null;
  servedSince: string | null;
  targetGeneration: number | null;
  pendingGeneration: number | null;
  packages: number;
  lastSuccess: string | null;
  lastError: string | null;
  bytesRemaining: number;
  scrub: { ok: number; failed: number; at: string | null };
  revocationListVersion: number | null;
  /** `bytes`: chunk bytes as stored (compressed where that paid); `plainBytes`: their plain size. */
  store: { chunks: number; bytes: number; plainBytes: number; packBytes: number };
  /** The validity window of a generation an offline bundle brought, while it is served. */
  offlineWindow?: { validUntil: string; issuedAt: string; open: boolean };
  runs: Array<{
    startedAt: string;
    outcome: string;
    generation: number | null;
    chunksFetched: number;
    bytesFetched: number;
    error: string | null;
  }>;
}

export async function depotStatus(dir: string): Promise<DepotStatus> {
  const layout = depotLayout(dir);
  const config = loadDepotConfig(layout.config);
  const db = DepotDb.open(layout.database, silentLogger());
  try {
    const served = db.served();
    const kv = (k: string) => db.getKv(k) || null;
    const status: DepotStatus = {
      role: 'depot',
      name: config.name,
      upstream: config.upstreamUrl,
      master: config.masterUrl,
      masters: unionUrls(configuredMasterUrls(config), learntMasterUrls(db)),
      enrollment: existsSync(layout.cert) ? 'approved' : existsSync(layout.enrollment) ? 'pending' : 'none',
      servedGeneration: served?.generation ?? null,
      servedSince: served?.switchedAt ?? null,
      targetGeneration: Number(kv(KV.targetGeneration)) || null,
      pendingGeneration: db.pending()?.generation ?? null,
      packages: db.slotTargets('served').length,
      lastSuccess: kv(KV.lastSuccess),
      lastError: kv(KV.lastError),
      bytesRemaining: Number(kv(KV.bytesRemaining)) || 0,
      scrub: { ok: Number(kv(KV.scrubOk)) || 0, failed: Number(kv(KV.scrubFailed)) || 0, at: kv(KV.scrubAt) },
      revocationListVersion: db.revocations()?.version ?? null,
      store: { chunks: 0, bytes: 0, plainBytes: 0, packBytes: 0 },
      runs: db.recentRuns(10).map((r) => ({
        startedAt: r.startedAt,
        outcome: r.outcome,
        generation: r.generation,
        chunksFetched: r.chunksFetched,
        bytesFetched: r.bytesFetched,
        error: r.error,
      })),
    };
    const w = currentWindow(db);
    if (w)
      status.offlineWindow = {
        validUntil: w.validUntil,
        issuedAt: w.issuedAt,
        open: Date.now() < Date.parse(w.validUntil),
      };
    if (existsSync(layout.cert)) {
      const info = certificateInfo(readFileSync(layout.cert, 'utf8'));
      status.certificate = {
        serial: info.serial,
        notAfter: info.notAfter.toISOString(),
        daysLeft: daysLeft(info),
      };
    }
    if (existsSync(layout.storeDir)) {
      const store = ChunkStore.open(layout.storeDir);
      try {
        const s = store.stats();
        status.store = {
          chunks: s.chunks,
          bytes: s.bytes,
          plainBytes: store.plainBytes(),
          packBytes: s.packBytes,
        };
      } finally {
        await store.close();
      }
    }
    return status;
  } finally {
    db.close();
  }
}

export function depotStatusLines(s: DepotStatus): string {
  const lines = [
    `depot ${s.name}: serving generation ${s.servedGeneration ?? '(none yet)'}${s.servedSince ? ` since ${s.servedSince}` : ''}, ${s.packages} package(s)`,
    `  upstream ${s.upstream}${s.upstream !== s.master ? ` (master ${s.master})` : ''}; enrollment ${s.enrollment}`,
    `  target generation ${s.targetGeneration ?? '?'}${s.pendingGeneration ? `, fetching generation ${s.pendingGeneration} (${s.bytesRemaining} bytes to go)` : ''}`,
    `  last success ${s.lastSuccess ?? 'never'}${s.lastError ? `; last error: ${s.lastError}` : ''}`,
    `  store ${s.store.chunks} chunks, ${s.store.bytes} bytes stored (${s.store.plainBytes} plain); scrub ${s.scrub.ok} ok, ${s.scrub.failed} failed${s.scrub.at ? ` at ${s.scrub.at}` : ''}`,
  ];
  if (s.offlineWindow)
    lines.push(
      `  offline bundle valid until ${s.offlineWindow.validUntil}${s.offlineWindow.open ? '' : ' (CLOSED: import a fresh bundle)'}`,
    );
  if (s.certificate)
    lines.push(
      `  certificate ${s.certificate.serial} valid until ${s.certificate.notAfter} (${s.certificate.daysLeft} days)`,
    );
  return lines.join('\n');
}
