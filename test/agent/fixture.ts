import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono } from 'hono';
import { buildManifest, encodeManifest, manifestId, type Manifest } from '../../src/content/manifest.js';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
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
import type { ServeEnv } from '../../src/serve/env.js';
import { errorHandler } from '../../src/serve/http-errors.js';
import { mutualTls } from '../../src/serve/mtls.js';
import { publicReadRoutes, readRoutes, type ReadApiSource } from '../../src/serve/read-api.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { ingestBuffer } from '../../src/store/ingest.js';
import { generateKeyPair, type KeyPair } from '../../src/tuf/keys.js';
import { TufRepository, type MetadataFile } from '../../src/tuf/repository.js';
import { rootFingerprint } from '../../src/tuf/client.js';
import { BATCH_CONTENT_TYPE, encodeRecordHeader } from '../../src/wire/chunk-batch.js';
import { delta as zstdDelta } from '../../src/compress/zstd.js';
import type { ZstdDeltaSource } from '../../src/deltas/source.js';
import { RemoteSource, type Source } from '../../agent/fetch/remote.js';
import { Clock } from '../helpers/manual-clock.js';
import { CHUNKING, corruptingChunks, sha256 } from '../helpers/signed-content.js';

export { Clock, CHUNKING, sha256 };
export { DAY, HOUR } from '../helpers/manual-clock.js';
export { resign } from '../helpers/signed-content.js';

let sharedCa: Ca | undefined;
/** One CA per test file (RSA key generation is slow). */
export function testCa(): Ca {
  if (!sharedCa) {
    const m = createCa({ commonName: 'agent test CA' });
    sharedCa = loadCa(m.keyPem, m.certPem);
  }
  return sharedCa;
}

/** What a server serves: a repository's current files, or a frozen copy of them (a lagging depot). */
export interface Served {
  files: Map<string, Buffer>;
  targets: Map<string, Buffer>;
  store: ChunkStore;
}

/** A signing repository (the same TufRepository the master uses) with a chunk store. */
export interface Repo extends Served {
  clock: Clock;
  repo: TufRepository;
  keys: { root: KeyPair; timestamp: KeyPair; snapshot: KeyPair; targets: KeyPair };
  fingerprint: string;
  publish(
    name: string,
    version: string,
    files: Array<{ path: string; data: Buffer; mode?: number }>,
  ): Promise<{ manifest: Manifest; bytes: Buffer }>;
  /** Publish exact manifest bytes (crafted by a test) as NAME@VERSION. */
  publishBytes(name: string, version: string, bytes: Buffer): void;
  /** A frozen copy of what is served now. */
  freeze(): Served;
  close(): Promise<void>;
}

export async function createRepo(clock = new Clock()): Promise<Repo> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-repo-'));
  const keys = {
    root: generateKeyPair(),
    timestamp: generateKeyPair(),
    snapshot: generateKeyPair(),
    targets: generateKeyPair(),
  };
  const created = TufRepository.create({
    root: { keys: [keys.root.publicKey], threshold: 1, signers: [keys.root.signer] },
    online: {
      timestamp: keys.timestamp.signer,
      snapshot: keys.snapshot.signer,
      targets: keys.targets.signer,
    },
    options: { now: clock.now, binCount: 16 },
  });
  const files = new Map<string, Buffer>();
  const put = (fs: MetadataFile[]) => fs.forEach((f) => files.set(f.name, Buffer.from(f.bytes)));
  put(created.files);
  const store = ChunkStore.open(dir, { gcGraceMs: 0 });
  const targets = new Map<string, Buffer>();
  const repo = created.repository;
  const publishBytes = (name: string, version: string, bytes: Buffer) => {
    const path = `${name}@${version}.json`;
    const digest = sha256(bytes);
    targets.set(`${digest}.${path}`, bytes);
    put(
      repo.addTarget(path, {
        length: bytes.length,
        sha256: digest,
        custom: { manifestId: manifestId(bytes), name, version },
      }),
    );
  };
  return {
    clock,
    repo,
    keys,
    fingerprint: rootFingerprint(files.get('1.root.json')!),
    files,
    targets,
    store,
    async publish(name, version, list) {
      const entries = [];
      for (const f of list) {
        const r = await ingestBuffer(store, f.data, { chunker: CHUNKING });
        entries.push({ path: f.path, mode: f.mode ?? 0o644, size: r.size, chunks: r.chunks });
      }
      const manifest = buildManifest({ name, version, chunking: CHUNKING, files: entries });
      const bytes = encodeManifest(manifest);
      publishBytes(name, version, bytes);
      return { manifest, bytes };
    },
    publishBytes,
    freeze: () => ({ files: new Map(files), targets: new Map(targets), store }),
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Misbehaviour a test server can be told to show. */
export interface Faults {
  /** Chunks served with one byte flipped. */
  corrupt: Set<string>;
  /** Metadata files served instead of the real ones (by name). */
  metadata: Map<string, Buffer>;
  /** Chunk batches answered one byte at a time, slowly (slow retrieval). */
  trickle: boolean;
  /** Target files followed by endless bytes, without a Content-Length (endless data). */
  endlessTargets: boolean;
  /** Cut the connection after this many chunk records of a batch (then behave). */
  cutAfterRecords?: number;
  /** Certificate serials refused with 403 revoked. */
  revoked: Set<string>;
  /**
   * zstd chunk deltas (`POST /v1/chunks/delta`), computed against the asked bases: 'honest', or a lying
   * depot's: frames that decode to other bytes of the right length ('wrong'), to more than the chunk
   * ('bomb'), or cut short ('truncated'); 'off' serves byte deltas only.
   */
  zstdDeltas: 'honest' | 'wrong' | 'bomb' | 'truncated' | 'off';
  /**
   * Deltas against bases the depot chose (kind 5): none while unset; 'reversed': the pair's bases in
   * reverse order (chunks the agent holds); 'foreign': the pair's bases and one chunk it never had.
   */
  chosenBases?: 'reversed' | 'foreign';
}

export interface TestServer {
  url: string;
  name: string;
  faults: Faults;
  requests: Array<{ method: string; path: string; ids?: string[] }>;
  source(kind?: Source['kind']): Source;
  close(): Promise<void>;
}

const log = silentLogger();

/** The real read API (public root + healthz, mutual TLS for the rest) over real HTTPS on 127.0.0.1. */
export async function startServer(
  served: Served,
  name: string,
  ca = testCa(),
  serverCert?: { keyPem: string; certPem: string },
): Promise<TestServer> {
  const faults: Faults = {
    corrupt: new Set(),
    metadata: new Map(),
    trickle: false,
    endlessTargets: false,
    revoked: new Set(),
    zstdDeltas: 'honest',
  };
  const zstdDeltas: ZstdDeltaSource = {
    frame: (_target, _bases, target, base) => {
      const mode = faults.zstdDeltas;
      if (mode === 'off') return Promise.resolve(undefined);
      let frame: Buffer;
      if (mode === 'wrong') {
        const other = Buffer.from(target);
        other[other.length >> 1] ^= 0x5a;
        frame = zstdDelta(base, other, 3);
      } else if (mode === 'bomb') {
        frame = zstdDelta(base, Buffer.concat([target, Buffer.alloc(1024 * 1024)]), 3);
      } else {
        frame = zstdDelta(base, target, 3);
        if (mode === 'truncated') frame = frame.subarray(0, frame.length >> 1);
      }
      return Promise.resolve(frame);
    },
    chosen: async (target, bases) => {
      const mode = faults.chosenBases;
      if (!mode) return undefined;
      const named = mode === 'reversed' ? [...bases].reverse() : [...bases, 'e'.repeat(64)];
      const ref = mode === 'reversed' ? named : bases;
      const base = Buffer.concat(await Promise.all(ref.map((id) => served.store.get(id))));
      return { bases: named, frame: zstdDelta(base, Buffer.from(await served.store.get(target)), 3) };
    },
  };
  const requests: TestServer['requests'] = [];
  const source: ReadApiSource = {
    metadata: (n) => faults.metadata.get(n) ?? served.files.get(n),
    target: (n) => served.targets.get(n),
    revocations: () => undefined,
    chunks: corruptingChunks(served.store, faults.corrupt),
  };
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(log));
  app.use('*', async (c, next) => {
    const rec: TestServer['requests'][number] = { method: c.req.method, path: c.req.path };
    requests.push(rec);
    if (rec.method === 'POST' && rec.path === '/v1/chunks/batch')
      rec.ids = ((await c.req.raw.clone().json()) as { ids: string[] }).ids;
    await next();
  });
  app.get('/healthz', (c) => c.json({ status: 'ok', name }));
  app.route('/', publicReadRoutes(source));
  app.use(
    '*',
    mutualTls({
      log,
      authorize: (peer) => {
        if (faults.revoked.has(peer.serial))
          return {
            ok: false,
            status: 403,
            code: 'revoked',
            reason: `certificate ${peer.serial} was revoked`,
          };
        return { ok: true, machine: { name: peer.commonName, role: 'agent', serial: peer.serial } };
      },
    }),
  );
  app.use('*', async (c, next) => {
    const out = c.env.outgoing;
    if (c.req.method === 'POST' && c.req.path === '/v1/chunks/batch') {
      const ids = requests.at(-1)?.ids ?? [];
      if (faults.trickle) return trickle(out);
      if (faults.cutAfterRecords !== undefined) {
        const n = faults.cutAfterRecords;
        faults.cutAfterRecords = undefined;
        return cutAfter(out, ids, n, served.store);
      }
    }
    if (faults.endlessTargets && c.req.path.startsWith('/v1/targets/')) {
      const bytes = served.targets.get(c.req.path.slice('/v1/targets/'.length).replace('%40', '@'));
      return endless(out, bytes ?? Buffer.alloc(0));
    }
    await next();
  });
  // No hot-chunk memory: the faults above stand for what a compromised depot sends, and a chunk kept in
  // memory by an earlier test would be served past them.
  app.route('/', readRoutes(source, log, { hotChunkBytes: 0, zstdDeltas }));

  // A plain server certificate by default; a depot's machine certificate (CN=name, OU=depot) when given.
  const srv =
    serverCert ??
    issueServerCertificate(ca, { commonName: name, ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
  const server = https.createServer(
    tlsServerOptions({ ...srv, caPem: ca.certPem }),
    getRequestListener(app.fetch),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    name,
    faults,
    requests,
    source: (kind = 'depot') => ({ name, url, kind }),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function trickle(out: ServerResponse): typeof RESPONSE_ALREADY_SENT {
  out.writeHead(200, { 'content-type': BATCH_CONTENT_TYPE });
  const timer = setInterval(() => {
    if (out.destroyed) clearInterval(timer);
    else out.write(Buffer.alloc(1));
  }, 50);
  out.on('close', () => clearInterval(timer));
  return RESPONSE_ALREADY_SENT;
}

function cutAfter(
  out: ServerResponse,
  ids: string[],
  n: number,
  store: ChunkStore,
): typeof RESPONSE_ALREADY_SENT {
  void (async () => {
    out.writeHead(200, { 'content-type': BATCH_CONTENT_TYPE });
    for (const id of ids.slice(0, n)) {
      const data = await store.get(id);
      out.write(encodeRecordHeader(id, data.length));
      out.write(data);
    }
    await new Promise((r) => setTimeout(r, 20));
    out.socket?.destroy();
  })();
  return RESPONSE_ALREADY_SENT;
}

function endless(out: ServerResponse, first: Buffer): typeof RESPONSE_ALREADY_SENT {
  out.writeHead(200, { 'content-type': 'application/json' });
  out.write(first);
  const junk = Buffer.alloc(64 * 1024, 0x20);
  const pump = () => {
    while (!out.destroyed && out.write(junk)) {
      /* keep writing until the socket pushes back */
    }
    if (!out.destroyed) out.once('drain', pump);
  };
  pump();
  return RESPONSE_ALREADY_SENT;
}

/** An agent identity issued by the test CA. */
export interface AgentIdentity {
  keyPem: string;
  certPem: string;
  caPem: string;
  serial: string;
}

export function agentIdentity(name = 'agent-1', ca = testCa()): AgentIdentity {
  const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: name, role: 'agent' });
  const certPem = issueMachineCertificate(ca, csrPem, { machineName: name, role: 'agent' });
  return { keyPem, certPem, caPem: ca.certPem, serial: certificateInfo(certPem).serial };
}

/** `connect` for fetchPackage: mutual TLS with the agent's identity and tight slow-retrieval limits. */
export function connector(
  id: AgentIdentity,
  opts: { timeoutMs?: number; minBytesPerSecond?: number; rateWindowMs?: number } = {},
) {
  return (s: Source) =>
    new RemoteSource(
      s,
      new HttpClient({
        baseUrl: s.url,
        caPem: id.caPem,
        certPem: id.certPem,
        keyPem: id.keyPem,
        timeoutMs: opts.timeoutMs ?? 5_000,
        minBytesPerSecond: opts.minBytesPerSecond ?? 0,
        rateWindowMs: opts.rateWindowMs ?? 1_000,
      }),
    );
}

/** Deterministic pseudo-random bytes. */
export { pseudoRandomBytes } from '../helpers/tmp.js';
