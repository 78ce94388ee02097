import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono } from 'hono';
import {
  buildManifest,
  encodeManifest,
  manifestId,
  uniqueChunkIds,
  type Manifest,
} from '../../src/content/manifest.js';
import { silentLogger } from '../../src/log.js';
import { tlsServerOptions } from '../../src/net/tls.js';
import {
  createCa,
  issueMachineCertificate,
  issueServerCertificate,
  loadCa,
  type Ca,
} from '../../src/pki/ca.js';
import { certificateInfo } from '../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../src/pki/csr.js';
import type { ZstdDeltaSource } from '../../src/deltas/source.js';
import { CHUNK_DELTA_LIMITS, parseDeltaRequestWith } from '../../src/wire/chunk-delta.js';
import { decodeBody } from '../../src/wire/json-encoding.js';
import { createRevocationList } from '../../src/wire/revocations.js';
import type { ServeEnv } from '../../src/serve/env.js';
import { errorHandler } from '../../src/serve/http-errors.js';
import { mutualTls } from '../../src/serve/mtls.js';
import { publicReadRoutes, readRoutes, type ReadApiSource } from '../../src/serve/read-api.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { ingestBuffer } from '../../src/store/ingest.js';
import { generateKeyPair, type KeyPair } from '../../src/tuf/keys.js';
import { TufRepository, type MetadataFile } from '../../src/tuf/repository.js';
import { rootFingerprint } from '../../src/tuf/client.js';
import { encodeRecordHeader, BATCH_CONTENT_TYPE } from '../../src/wire/chunk-batch.js';
import { decodeStatusReport, type StatusReport } from '../../src/wire/status.js';
import { rootCaFields } from '../../src/tuf/root-ca.js';
import { decodeEnrollRequest, type EnrollRequest } from '../../src/wire/enroll.js';
import { newDepotConfig, type DepotConfig, type DepotConfigInput } from '../../depot/config.js';
import { depotLayout } from '../../depot/layout.js';
import { Clock } from '../helpers/manual-clock.js';
import { CHUNKING, corruptingChunks, sha256 } from '../helpers/signed-content.js';

export { Clock, CHUNKING, sha256 };
export { DAY, HOUR } from '../helpers/manual-clock.js';
export { resign } from '../helpers/signed-content.js';

/** Deterministic pseudo-random bytes (xorshift), so content is incompressible and repeatable. */
export function randomBytesSeeded(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, Math.min(i, n - 4));
  }
  return out;
}

export interface Published {
  path: string;
  name: string;
  manifest: Manifest;
  bytes: Buffer;
  chunkIds: string[];
}

export interface Faults {
  /** Chunk ids served with one byte flipped. */
  corrupt: Set<string>;
  /** Target names answered with 404 although the catalog lists them. */
  missingTargets: Set<string>;
  /** Destroy every connection (the master is unreachable). */
  down: boolean;
  /** Take over a batch request: write part of the answer and cut the connection, etc. Return true when handled. */
  batch?: (ids: string[], res: import('node:http').ServerResponse) => boolean;
  /** Take over a chunk delta request (`POST /v1/chunks/delta`) the same way. */
  delta?: (
    pairs: Array<{ bases: string[]; offset: number; target: string }>,
    res: import('node:http').ServerResponse,
  ) => boolean;
  /** Take over a manifest delta request (`GET /v1/targets-delta/{base}/{name}`) the same way. */
  targetDelta?: (base: string, name: string, res: import('node:http').ServerResponse) => boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  ids?: string[];
  /** Chunk delta requests: the (bases, target) pairs asked for. */
  pairs?: Array<{ bases: string[]; target: string }>;
  /** Chunk delta requests: whether they accept bases chosen by the upstream (kind 5). */
  chosen?: boolean;
  /** The request body's content-encoding (br once the depot saw the upstream reads it). */
  encoding?: string | undefined;
}

/** A fake master: the real read API over real mutual TLS, serving a TufRepository's files and a ChunkStore. */
export interface Upstream {
  url: string;
  clock: Clock;
  ca: Ca;
  repo: TufRepository;
  keys: { root: KeyPair; timestamp: KeyPair; snapshot: KeyPair; targets: KeyPair };
  fingerprint: string;
  files: Map<string, Buffer>;
  store: ChunkStore;
  targets: Map<string, Buffer>;
  faults: Faults;
  /** Where the fake master's zstd chunk deltas come from (none while unset), as `master serve`'s. */
  zstd: { source?: ZstdDeltaSource };
  requests: RecordedRequest[];
  reports: Array<{ machine: string; report: StatusReport }>;
  revoked: Set<string>;
  dir: string;
  /** One-time enrollment tokens the fake master accepts. */
  tokens: Set<string>;
  enrollments: Map<string, { req: EnrollRequest; approved: boolean }>;
  /** A single-file package; `file` is the file's path in it (default setup.bin). */
  publish(name: string, version: string, data: Buffer, file?: string): Promise<Published>;
  unpublish(path: string): void;
  /** Sign and publish a revocation list naming these serials. */
  revoke(serials: string[]): void;
  putFiles(files: MetadataFile[]): void;
  close(): Promise<void>;
}

let sharedCa: Ca | undefined;
/** One CA per test process (RSA 3072 key generation is slow). */
export function testCa(): Ca {
  if (!sharedCa) {
    const m = createCa({ commonName: 'depotsync test CA' });
    sharedCa = loadCa(m.keyPem, m.certPem);
  }
  return sharedCa;
}

export async function startUpstream(
  opts: { clock?: Clock; ca?: Ca; rootFields?: Record<string, string> } = {},
): Promise<Upstream> {
  const clock = opts.clock ?? new Clock();
  const ca = opts.ca ?? testCa();
  const dir = mkdtempSync(join(tmpdir(), 'depot-upstream-'));
  const keys = {
    root: generateKeyPair(),
    timestamp: generateKeyPair(),
    snapshot: generateKeyPair(),
    targets: generateKeyPair(),
  };
  const created = TufRepository.create({
    // The root names the CA, as a real master's does: enrollment talks TLS only to a server of it.
    root: {
      keys: [keys.root.publicKey],
      threshold: 1,
      signers: [keys.root.signer],
      fields: opts.rootFields ?? rootCaFields(ca.certPem),
    },
    online: {
      timestamp: keys.timestamp.signer,
      snapshot: keys.snapshot.signer,
      targets: keys.targets.signer,
    },
    options: { now: clock.now, binCount: 16 },
  });
  const repo = created.repository;
  const files = new Map<string, Buffer>();
  const putFiles = (fs: MetadataFile[]) => fs.forEach((f) => files.set(f.name, Buffer.from(f.bytes)));
  putFiles(created.files);
  const fingerprint = rootFingerprint(files.get('1.root.json')!);
  const store = ChunkStore.open(dir, { gcGraceMs: 0 });
  const targets = new Map<string, Buffer>();
  const faults: Faults = { corrupt: new Set(), missingTargets: new Set(), down: false };
  const requests: RecordedRequest[] = [];
  const reports: Upstream['reports'] = [];
  const revoked = new Set<string>();
  let revocations: Buffer | undefined;
  const tokens = new Set<string>();
  const enrollments = new Map<string, { req: EnrollRequest; approved: boolean }>();
  let enrollSeq = 0;
  const enrollReply = (c: import('hono').Context, id: string) => {
    const e = enrollments.get(id);
    if (!e) return c.json({ error: { code: 'not-found', message: `no enrollment ${id}` } }, 404);
    if (!e.approved) return c.json({ state: 'pending', request: id, name: e.req.name }, 202);
    const certificate = issueMachineCertificate(ca, e.req.csr, { machineName: e.req.name, role: e.req.role });
    return c.json(
      { state: 'approved', request: id, name: e.req.name, certificate, caCertificate: ca.certPem },
      200,
    );
  };
  let revocationVersion = 0;

  const source: ReadApiSource = {
    metadata: (name) => files.get(name),
    target: (name) => (faults.missingTargets.has(name) ? undefined : targets.get(name)),
    revocations: () => revocations,
    latestRootVersion: () =>
      Math.max(0, ...[...files.keys()].map((n) => Number(/^(\d+)\.root\.json$/.exec(n)?.[1] ?? 0))) ||
      undefined,
    chunks: corruptingChunks(store, faults.corrupt),
  };
  const log = silentLogger();
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(log));
  app.use('*', async (c, next) => {
    if (faults.down) {
      c.env.incoming.socket.destroy();
      return RESPONSE_ALREADY_SENT;
    }
    const rec: RecordedRequest = { method: c.req.method, path: c.req.path };
    requests.push(rec);
    if (rec.method === 'POST' && rec.path === '/v1/chunks/batch') {
      rec.ids = ((await c.req.raw.clone().json()) as { ids: string[] }).ids;
      if (faults.batch && faults.batch(rec.ids, c.env.outgoing)) return RESPONSE_ALREADY_SENT;
    }
    if (rec.method === 'POST' && rec.path === '/v1/chunks/delta') {
      // Parsed as the read API does (a pair's bases may name an earlier pair's).
      const parsed = parseDeltaRequestWith(
        decodeBody(
          Buffer.from(await c.req.raw.clone().arrayBuffer()),
          c.req.header('content-encoding'),
          CHUNK_DELTA_LIMITS.maxRequestBytes,
          'chunk delta request',
        ),
      );
      rec.pairs = parsed.pairs;
      rec.chosen = parsed.chosen;
      rec.encoding = c.req.header('content-encoding');
      if (faults.delta && faults.delta(rec.pairs, c.env.outgoing)) return RESPONSE_ALREADY_SENT;
    }
    const td = /^\/v1\/targets-delta\/([^/]+)\/([^/]+)$/.exec(rec.path);
    if (rec.method === 'GET' && td && faults.targetDelta) {
      const [base, name] = [decodeURIComponent(td[1]!), decodeURIComponent(td[2]!)];
      if (faults.targetDelta(base, name, c.env.outgoing)) return RESPONSE_ALREADY_SENT;
    }
    await next();
  });
  app.route('/', publicReadRoutes(source));
  // Enrollment (public): a valid one-time token approves at once, else the request waits for `approve`.
  app.post('/v1/enroll', async (c) => {
    const req = decodeEnrollRequest(await c.req.json());
    const id = `req-${++enrollSeq}`;
    enrollments.set(id, { req, approved: false });
    if (req.token !== undefined) {
      if (!tokens.delete(req.token))
        return c.json({ error: { code: 'bad-token', message: 'enrollment token unknown or used' } }, 403);
      enrollments.get(id)!.approved = true;
    }
    return enrollReply(c, id);
  });
  app.get('/v1/enroll/:id', (c) => enrollReply(c, c.req.param('id')));
  app.use(
    '*',
    mutualTls({
      log,
      authorize: (peer) => {
        if (revoked.has(peer.serial))
          return {
            ok: false,
            status: 403,
            code: 'revoked',
            reason: `certificate ${peer.serial} was revoked`,
          };
        if (peer.role !== 'depot' && peer.role !== 'agent')
          return { ok: false, status: 403, code: 'wrong-role', reason: 'not a machine certificate' };
        return { ok: true, machine: { name: peer.commonName, role: peer.role, serial: peer.serial } };
      },
    }),
  );
  app.post('/v1/status', async (c) => {
    reports.push({ machine: c.get('machine').name, report: decodeStatusReport(await c.req.json()) });
    return c.json({ ok: true });
  });
  // No hot-chunk memory: the faults above stand for what a compromised master sends, and a chunk kept in
  // memory by an earlier test would be served past them.
  const zstd: { source?: ZstdDeltaSource } = {};
  app.route(
    '/',
    readRoutes(source, log, {
      hotChunkBytes: 0,
      zstdDeltas: {
        frame: (t, b, tb, bb) => zstd.source?.frame(t, b, tb, bb) ?? Promise.resolve(undefined),
      },
    }),
  );

  const srv = issueServerCertificate(ca, {
    commonName: 'master',
    ipAddresses: ['127.0.0.1'],
    dnsNames: ['localhost'],
  });
  const server = https.createServer(
    tlsServerOptions({ ...srv, caPem: ca.certPem }),
    getRequestListener(app.fetch),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `https://127.0.0.1:${port}`,
    clock,
    ca,
    repo,
    keys,
    fingerprint,
    files,
    store,
    targets,
    faults,
    zstd,
    requests,
    reports,
    revoked,
    dir,
    tokens,
    enrollments,
    putFiles,
    async publish(name, version, data, file = 'setup.bin') {
      const r = await ingestBuffer(store, data, { chunker: CHUNKING });
      const manifest = buildManifest({
        name,
        version,
        chunking: CHUNKING,
        files: [{ path: file, mode: 0o644, size: r.size, chunks: r.chunks }],
      });
      const bytes = encodeManifest(manifest);
      const path = `${name}@${version}.json`;
      const digest = sha256(bytes);
      targets.set(`${digest}.${path}`, bytes);
      putFiles(
        repo.addTarget(path, {
          length: bytes.length,
          sha256: digest,
          custom: {
            manifestId: manifestId(bytes),
            name,
            version,
            bytes: manifest.totalBytes,
            chunks: manifest.tree.count,
          },
        }),
      );
      return { path, name: `${digest}.${path}`, manifest, bytes, chunkIds: uniqueChunkIds(manifest) };
    },
    unpublish(path) {
      putFiles(repo.removeTarget(path));
    },
    revoke(serials) {
      serials.forEach((s) => revoked.add(s));
      revocations = createRevocationList(ca, revoked, ++revocationVersion, { now: clock.now() });
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Batch handler that answers the first `records` chunks of the request and then cuts the connection. */
export function cutAfter(up: Upstream, records: number, times = 1): Faults['batch'] {
  let left = times;
  return (ids, res) => {
    if (left <= 0) return false;
    left--;
    void (async () => {
      res.writeHead(200, { 'content-type': BATCH_CONTENT_TYPE });
      for (const id of ids.slice(0, records)) {
        const data = await up.store.get(id);
        res.write(encodeRecordHeader(id, data.length));
        res.write(data);
      }
      await new Promise((r) => setTimeout(r, 20));
      res.socket?.destroy();
    })();
    return true;
  };
}

export interface DepotFiles {
  dir: string;
  name: string;
  serial: string;
  keyPem: string;
  certPem: string;
  config: DepotConfig;
}

/** Write an enrolled depot directory (machine key and certificate from the test CA, depot.json). */
export function writeDepotDir(
  up: Pick<Upstream, 'url' | 'ca' | 'fingerprint'>,
  opts: { name?: string; upstreamUrl?: string; config?: Partial<DepotConfigInput>; dir?: string } = {},
): DepotFiles {
  const name = opts.name ?? 'depot-1';
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), `depot-${name}-`));
  const layout = depotLayout(dir);
  const { keyPem, csrPem } = createMachineKeyAndCsr({
    machineName: name,
    role: 'depot',
    ipAddresses: ['127.0.0.1'],
    dnsNames: ['localhost'],
  });
  const certPem = issueMachineCertificate(up.ca, csrPem, { machineName: name, role: 'depot' });
  mkdirSync(layout.tlsDir, { recursive: true });
  writeFileSync(layout.key, keyPem, { mode: 0o600 });
  writeFileSync(layout.cert, certPem);
  writeFileSync(layout.caCert, up.ca.certPem);
  const config = newDepotConfig({
    name,
    masterUrl: up.url,
    upstreamUrl: opts.upstreamUrl ?? up.url,
    fingerprint: up.fingerprint,
    listen: '127.0.0.1:0',
    hosts: ['127.0.0.1'],
    ...opts.config,
    sync: { retryDelayMs: 0, batchMaxBytes: 256 * 1024, ...opts.config?.sync },
  });
  writeFileSync(layout.config, JSON.stringify(config, null, 2));
  return { dir, name, serial: certificateInfo(certPem).serial, keyPem, certPem, config };
}

/** An agent's key and certificate from the test CA. */
export function agentCredentials(ca: Ca, name: string): { keyPem: string; certPem: string; serial: string } {
  const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: name, role: 'agent' });
  const certPem = issueMachineCertificate(ca, csrPem, { machineName: name, role: 'agent' });
  return { keyPem, certPem, serial: certificateInfo(certPem).serial };
}
