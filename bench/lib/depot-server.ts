/**
 * A depot's read API in its own process, for benchmarks (forked by bench/lib/package-depot.ts): what
 * `depot serve` mounts (mutual TLS, `POST /v1/chunks/batch`, chunks re-hashed before serving unless
 * BENCH_VERIFY_ON_SERVE=0; BENCH_VERIFIED_TTL_MS: how long a checked chunk is trusted, default 0) over the ChunkStore, metadata and targets that `preparePackage` wrote into
 * BENCH_ROOT. Sends `{port}` to its parent once listening; exits when the parent disconnects.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { silentLogger } from '../../src/log.js';
import { tlsServerOptions } from '../../src/net/tls.js';
import type { ServeEnv } from '../../src/serve/env.js';
import { errorHandler } from '../../src/serve/http-errors.js';
import { mutualTls } from '../../src/serve/mtls.js';
import { publicReadRoutes, readRoutes } from '../../src/serve/read-api.js';
import { ChunkStore } from '../../src/store/chunk-store.js';

const root = process.env.BENCH_ROOT as string;
const f = (n: string) => readFileSync(join(root, n), 'utf8');
const store = ChunkStore.open(join(root, 'store'));
const load = (dir: string) =>
  new Map(readdirSync(join(root, dir)).map((n) => [n, readFileSync(join(root, dir, n))]));
const metadata = load('metadata');
const targets = load('targets');
const log = silentLogger();
const source = {
  metadata: (n: string) => metadata.get(n),
  target: (n: string) => targets.get(n),
  revocations: () => undefined,
  chunks: store,
};
const app = new Hono<ServeEnv>();
app.onError(errorHandler(log));
app.get('/healthz', (c) => c.json({ status: 'ok' }));
app.route('/', publicReadRoutes(source));
app.use(
  '*',
  mutualTls({
    log,
    authorize: (p) => ({ ok: true, machine: { name: p.commonName, role: 'agent', serial: p.serial } }),
  }),
);
app.route(
  '/',
  readRoutes(source, log, {
    verifyOnServe: process.env.BENCH_VERIFY_ON_SERVE !== '0',
    ...(process.env.BENCH_VERIFIED_TTL_MS
      ? { verifiedTtlMs: Number(process.env.BENCH_VERIFIED_TTL_MS) }
      : {}),
    ...(process.env.BENCH_BATCH_MEMORY_MIB
      ? { batchMemoryBytes: Number(process.env.BENCH_BATCH_MEMORY_MIB) * 1024 * 1024 }
      : {}),
  }),
);
const server = https.createServer(
  {
    ...tlsServerOptions({ keyPem: f('depot.key'), certPem: f('depot.pem'), caPem: f('ca.pem') }),
    highWaterMark: 1024 * 1024,
  } as https.ServerOptions,
  getRequestListener(app.fetch),
);
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));
