/**
 * A minimal master for the depot benchmarks: the shared read API over mutual TLS, serving a
 * TufRepository's files and a ChunkStore (what `master serve` will serve), plus POST /v1/status.
 */
import { createHash } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { buildManifest, encodeManifest, manifestId, type ChunkRef } from '../src/content/manifest.js';
import { silentLogger } from '../src/log.js';
import { tlsServerOptions } from '../src/net/tls.js';
import type { Ca } from '../src/pki/ca.js';
import { issueServerCertificate } from '../src/pki/ca.js';
import { createRevocationList } from '../src/wire/revocations.js';
import type { ServeEnv } from '../src/serve/env.js';
import { errorHandler } from '../src/serve/http-errors.js';
import { mutualTls } from '../src/serve/mtls.js';
import { publicReadRoutes, readRoutes } from '../src/serve/read-api.js';
import type { ChunkStore } from '../src/store/chunk-store.js';
import { generateKeyPair } from '../src/tuf/keys.js';
import { TufRepository, type MetadataFile, type TargetChange } from '../src/tuf/repository.js';
import { rootFingerprint } from '../src/tuf/client.js';

export const BENCH_CHUNKING = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 };

export interface BenchMaster {
  url: string;
  fingerprint: string;
  repo: TufRepository;
  /** Bytes sent in response bodies (everything the depot downloads). */
  sentBytes(): number;
  /** HTTP requests received (what a no-op sync costs in round trips). */
  requests(): number;
  /** Publish many packages in one generation, each a list of files with their chunks. */
  publish(packages: Array<{ name: string; version: string; size: number; chunks: ChunkRef[] }>): void;
  unpublish(paths: string[]): void;
  close(): Promise<void>;
}

export async function startBenchMaster(
  ca: Ca,
  store: ChunkStore,
  binCount: 16 | 256 | 4096 = 256,
): Promise<BenchMaster> {
  const k = {
    root: generateKeyPair(),
    timestamp: generateKeyPair(),
    snapshot: generateKeyPair(),
    targets: generateKeyPair(),
  };
  const created = TufRepository.create({
    root: { keys: [k.root.publicKey], threshold: 1, signers: [k.root.signer] },
    online: { timestamp: k.timestamp.signer, snapshot: k.snapshot.signer, targets: k.targets.signer },
    options: { binCount },
  });
  const files = new Map<string, Buffer>();
  const put = (fs: MetadataFile[]) => fs.forEach((f) => files.set(f.name, Buffer.from(f.bytes)));
  put(created.files);
  const targets = new Map<string, Buffer>();
  const log = silentLogger();
  const app = new Hono<ServeEnv>();
  let sent = 0;
  app.onError(errorHandler(log));
  // A signed, empty revocation list, as a real master serves one: the depot checks it each sync.
  const revocations = createRevocationList(ca, [], 1);
  const source = {
    metadata: (n: string) => files.get(n),
    target: (n: string) => targets.get(n),
    revocations: () => revocations,
    latestRootVersion: () =>
      Math.max(...[...files.keys()].map((n) => Number(/^(\d+)\.root\.json$/.exec(n)?.[1] ?? 0))),
    chunks: store,
  };
  let requests = 0;
  app.use('*', async (_c, next) => {
    requests++;
    await next();
  });
  app.route('/', publicReadRoutes(source));
  app.use(
    '*',
    mutualTls({
      log,
      authorize: (p) => ({
        ok: true,
        machine: { name: p.commonName, role: p.role ?? 'depot', serial: p.serial },
      }),
    }),
  );
  app.post('/v1/status', (c) => c.json({ ok: true }));
  app.route('/', readRoutes(source, log, { verifyOnServe: false, onServed: (_k, n) => (sent += n) }));
  const srv = issueServerCertificate(ca, { commonName: 'master', ipAddresses: ['127.0.0.1'] });
  const server = https.createServer(
    { ...tlsServerOptions({ ...srv, caPem: ca.certPem }), highWaterMark: 1024 * 1024 } as https.ServerOptions,
    getRequestListener(app.fetch),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fingerprint: rootFingerprint(files.get('1.root.json')!),
    repo: created.repository,
    sentBytes: () => sent,
    requests: () => requests,
    publish(packages) {
      const changes: TargetChange[] = packages.map((p) => {
        const m = buildManifest({
          name: p.name,
          version: p.version,
          chunking: BENCH_CHUNKING,
          files: [{ path: 'setup.bin', mode: 0o644, size: p.size, chunks: p.chunks }],
        });
        const bytes = encodeManifest(m);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        const path = `${p.name}@${p.version}.json`;
        targets.set(`${sha256}.${path}`, bytes);
        return {
          path,
          target: {
            length: bytes.length,
            sha256,
            custom: {
              manifestId: manifestId(bytes),
              name: p.name,
              version: p.version,
              bytes: p.size,
              chunks: m.tree.count,
            },
          },
        };
      });
      put(created.repository.updateTargets(changes));
    },
    unpublish(paths) {
      put(created.repository.updateTargets(paths.map((path) => ({ path, remove: true as const }))));
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
