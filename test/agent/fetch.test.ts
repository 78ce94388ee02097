import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchPackage, type FetchPackageOptions } from '../../agent/fetch/fetch.js';
import { openFileSink } from '../../agent/fetch/staging.js';
import { MemoryAgentState } from '../../agent/state.js';
import { buildManifest, decodeManifest, encodeManifest } from '../../src/content/manifest.js';
import { isDepotsyncError } from '../../src/errors.js';
import { FileChunkCache } from '../../agent/fetch/file-cache.js';
import { silentLogger } from '../../src/log.js';
import { generateKeyPair } from '../../src/tuf/keys.js';
import { DirectoryTrustedStore } from '../../src/tuf/client.js';
import {
  agentIdentity,
  Clock,
  connector,
  createRepo,
  DAY,
  pseudoRandomBytes,
  resign,
  sha256,
  startServer,
  type AgentIdentity,
  type Repo,
  type TestServer,
} from './fixture.js';

let repo: Repo;
let master: TestServer;
let depot1: TestServer;
let depot2: TestServer;
let id: AgentIdentity;
const clock = new Clock();
const big = pseudoRandomBytes(600_000, 7);
const roots: string[] = [];

beforeAll(async () => {
  repo = await createRepo(clock);
  await repo.publish('tool', '1.0', [{ path: 'tool.bin', data: big, mode: 0o755 }]);
  await repo.publish('suite', '2.0', [
    { path: 'bin/run', data: pseudoRandomBytes(70_000, 2), mode: 0o755 },
    { path: 'docs/readme.txt', data: Buffer.from('hello\n') },
    { path: 'empty.dat', data: Buffer.alloc(0) },
    {
      path: 'same-twice.bin',
      data: Buffer.concat([pseudoRandomBytes(40_000, 3), pseudoRandomBytes(40_000, 3)]),
    },
  ]);
  await repo.publish('multi', '1.9', [{ path: 'm.bin', data: Buffer.from('nine') }]);
  await repo.publish('multi', '1.10', [{ path: 'm.bin', data: Buffer.from('ten') }]);
  id = agentIdentity();
  master = await startServer(repo, 'master');
  depot1 = await startServer(repo, 'depot-1');
  depot2 = await startServer(repo, 'depot-2');
});

afterAll(async () => {
  await Promise.all([master, depot1, depot2].map((s) => s?.close()));
  await repo?.close();
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function resetFaults(): void {
  for (const s of [master, depot1, depot2]) {
    s.faults.corrupt.clear();
    s.faults.metadata.clear();
    s.faults.revoked.clear();
    s.faults.trickle = false;
    s.faults.endlessTargets = false;
    s.faults.cutAfterRecords = undefined;
    s.requests.length = 0;
  }
}

function newAgent() {
  const dir = mkdtempSync(join(tmpdir(), 'agent-fetch-'));
  roots.push(dir);
  mkdirSync(join(dir, 'out'));
  const state = new MemoryAgentState();
  const store = new DirectoryTrustedStore(join(dir, 'tuf'));
  const base = (
    over: Partial<FetchPackageOptions> & Pick<FetchPackageOptions, 'name' | 'sources'>,
  ): FetchPackageOptions => ({
    out: join(dir, 'out', over.name),
    connect: connector(id),
    cacheDir: join(dir, 'cache'),
    store,
    fingerprint: repo.fingerprint,
    state,
    now: clock.now,
    ...over,
  });
  return {
    dir,
    state,
    store,
    outDir: join(dir, 'out'),
    fetch: (o: Partial<FetchPackageOptions> & Pick<FetchPackageOptions, 'name' | 'sources'>) =>
      fetchPackage(base(o)),
  };
}

/** Nothing but the listed names in the output folder: no staging left, no partial output. */
function outEntries(dir: string): string[] {
  return readdirSync(dir).sort();
}

async function failure(p: Promise<unknown>): Promise<Error & { code?: string; hint?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected the fetch to fail');
}

describe('agent fetch: happy paths', () => {
  it('fetches a file package from a depot, verified, into place', async () => {
    resetFaults();
    const a = newAgent();
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      sources: [depot1.source(), master.source('master')],
    });
    expect(r.name).toBe('tool');
    expect(r.version).toBe('1.0');
    expect(r.kind).toBe('file');
    expect(r.source).toEqual(['depot-1']);
    expect(readFileSync(r.path).equals(big)).toBe(true);
    expect(statSync(r.path).mode & 0o777).toBe(0o755);
    expect(outEntries(a.outDir)).toEqual(['tool']);
    expect(master.requests).toHaveLength(0);
    expect(a.state.highest('generation')).toBeGreaterThan(1);
  });

  it('fetches a folder package (nested paths, empty file, a chunk used twice)', async () => {
    resetFaults();
    const a = newAgent();
    const r = await a.fetch({ name: 'suite', sources: [depot2.source()] });
    expect(r.kind).toBe('folder');
    expect(r.version).toBe('2.0');
    expect(readFileSync(join(r.path, 'bin/run')).equals(pseudoRandomBytes(70_000, 2))).toBe(true);
    expect(statSync(join(r.path, 'bin/run')).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(r.path, 'docs/readme.txt'), 'utf8')).toBe('hello\n');
    expect(statSync(join(r.path, 'empty.dat')).size).toBe(0);
    expect(readFileSync(join(r.path, 'same-twice.bin')).length).toBe(80_000);
    expect(outEntries(a.outDir)).toEqual(['suite']);
  });

  it('picks the highest version when none is given (numeric-aware: 1.10 > 1.9)', async () => {
    resetFaults();
    const a = newAgent();
    const r = await a.fetch({ name: 'multi', sources: [depot1.source()] });
    expect(r.version).toBe('1.10');
    expect(readFileSync(r.path, 'utf8')).toBe('ten');
  });

  it('refuses an existing folder at --out before downloading chunks', async () => {
    resetFaults();
    const a = newAgent();
    mkdirSync(join(a.outDir, 'suite'));
    const e = await failure(a.fetch({ name: 'suite', sources: [depot1.source()] }));
    expect((e as { code?: string }).code).toBe('already-exists');
    expect(depot1.requests.some((q) => q.path === '/v1/chunks/batch')).toBe(false);
  });
});

describe('agent fetch: bad sources and faults', () => {
  it('a depot serving a tampered chunk: fallback to the next source; the bad bytes are never cached', async () => {
    resetFaults();
    const a = newAgent();
    const ids = depot1ChunkIds('tool', '1.0');
    depot1.faults.corrupt.add(ids[1]!);
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      sources: [depot1.source(), master.source('master')],
    });
    expect(r.source).toEqual(['depot-1', 'master']);
    expect(readFileSync(r.path).equals(big)).toBe(true);
    expect(a.state.health(depot1.url).penaltyReason).toMatch(/hash/);
    const cache = await FileChunkCache.open(join(a.dir, 'cache'), { logger: silentLogger() });
    try {
      // Whatever is cached verifies (the tampered copy was never written).
      for (const cid of ids) if (cache.missing([cid]).length === 0) await cache.get(cid, { verify: true });
    } finally {
      await cache.close();
    }
  });

  it('a tampered chunk and no other source: a clear error, nothing at the output, the chunk not cached', async () => {
    resetFaults();
    const a = newAgent();
    const ids = depot1ChunkIds('tool', '1.0');
    depot1.faults.corrupt.add(ids[0]!);
    const e = await failure(a.fetch({ name: 'tool', version: '1.0', sources: [depot1.source()] }));
    expect(isDepotsyncError(e, 'hash-mismatch')).toBe(true);
    expect(e.message).toContain(ids[0]!);
    expect(outEntries(a.outDir)).toEqual([]);
    const cache = await FileChunkCache.open(join(a.dir, 'cache'), { logger: silentLogger() });
    try {
      expect(cache.missing([ids[0]!])).toEqual([ids[0]!]);
    } finally {
      await cache.close();
    }
  });

  it('a lagging depot (older valid generation than seen): rollback refused, the agent moves to a fresher source', async () => {
    resetFaults();
    const lagging = await startServer(repo.freeze(), 'lagging');
    try {
      await repo.publish('newer', '1.0', [{ path: 'n.bin', data: Buffer.from('new') }]);
      const a = newAgent();
      await a.fetch({ name: 'newer', sources: [master.source('master')] });
      const r = await a.fetch({
        name: 'tool',
        version: '1.0',
        sources: [lagging.source(), master.source('master')],
      });
      expect(r.source[0]).toBe('master');
      expect(a.state.health(lagging.url).penaltyReason).toMatch(/older than/);
      expect(lagging.requests.some((q) => q.path === '/v1/chunks/batch')).toBe(false);
      // Only the lagging one: a rollback error, nothing written.
      const e = await failure(
        a.fetch({ name: 'multi', out: join(a.outDir, 'multi'), sources: [lagging.source()] }),
      );
      expect(isDepotsyncError(e, 'version-rollback')).toBe(true);
      expect(existsSync(join(a.outDir, 'multi'))).toBe(false);
    } finally {
      await lagging.close();
    }
  });

  it('an expired timestamp from every source: freeze refused, the error names the expiry', async () => {
    resetFaults();
    const a = newAgent();
    const later = new Clock(clock.t + 3 * DAY);
    const e = await failure(
      a.fetch({
        name: 'tool',
        version: '1.0',
        now: later.now,
        sources: [depot1.source(), master.source('master')],
      }),
    );
    expect(isDepotsyncError(e, 'expired')).toBe(true);
    expect(e.message).toMatch(/depot-1: .*expired at \d{4}-/);
    expect(e.message).toMatch(/master: .*expired at/);
    expect(outEntries(a.outDir)).toEqual([]);
  });

  it('a catalog entry signed by a key the root does not list: refused, naming the bin and the key', async () => {
    resetFaults();
    // The online timestamp and snapshot keys compromised, the targets key not: only the bin's
    // signature stands between the agent and the forged entry.
    const forged = forgeBin('tool@1.0.json');
    for (const [n, b] of forged) depot1.faults.metadata.set(n, b);
    const a = newAgent();
    const e = await failure(a.fetch({ name: 'tool', version: '1.0', sources: [depot1.source()] }));
    expect(e.code).toMatch(/threshold-not-met|bad-signature|unknown-key/);
    expect(e.message).toMatch(/bin-[0-9a-f]+ metadata .*unknown key/);
    expect(outEntries(a.outDir)).toEqual([]);
  });

  it('a depot serving a whole repository of its own keys: refused; the next source serves', async () => {
    resetFaults();
    const evilRepo = await createRepo(clock);
    await evilRepo.publish('tool', '1.0', [{ path: 'tool.bin', data: Buffer.from('malware') }]);
    const evil = await startServer(evilRepo, 'evil');
    try {
      const a = newAgent();
      const r = await a.fetch({ name: 'tool', version: '1.0', sources: [evil.source(), depot2.source()] });
      expect(r.source).toEqual(['depot-2']);
      expect(readFileSync(r.path).equals(big)).toBe(true);
      expect(a.state.health(evil.url).penaltyReason).toMatch(/fingerprint|unknown key|threshold/);
    } finally {
      await evil.close();
      await evilRepo.close();
    }
  });

  it('a manifest whose hash tree does not match its chunks: refused', async () => {
    resetFaults();
    const m = buildManifest({
      name: 'badtree',
      version: '1',
      chunking: { minBytes: 4096, avgBytes: 16384, maxBytes: 65536 },
      files: [
        {
          path: 'x',
          mode: 0o644,
          size: 4,
          chunks: [{ id: sha256(Buffer.from('x')).replace(/^./, 'a'), length: 4 }],
        },
      ],
    });
    const bytes = encodeManifest({ ...m, tree: { count: 1, root: 'ab'.repeat(32) } });
    repo.publishBytes('badtree', '1', bytes);
    const a = newAgent();
    const e = await failure(
      a.fetch({ name: 'badtree', sources: [depot1.source(), master.source('master')] }),
    );
    expect(isDepotsyncError(e, 'hash-mismatch')).toBe(true);
    expect(e.message).toMatch(/tree root does not match/);
    expect(outEntries(a.outDir)).toEqual([]);
  });

  it('a manifest path with "..": refused before anything is written', async () => {
    resetFaults();
    const data = Buffer.from('evil');
    const m = await repo.publish('evil-src', '1', [{ path: 'ok.txt', data }]);
    const bytes = encodeManifest({
      ...m.manifest,
      name: 'evil',
      files: [{ ...m.manifest.files[0]!, path: '../escaped.txt' }],
    });
    repo.publishBytes('evil', '1', bytes);
    const a = newAgent();
    const e = await failure(a.fetch({ name: 'evil', sources: [depot1.source()] }));
    expect(e.code).toBe('bad-input');
    expect(e.message).toMatch(/\.\./);
    expect(outEntries(a.outDir)).toEqual([]);
    expect(existsSync(join(a.dir, 'escaped.txt'))).toBe(false);
  });

  it('a depot that trickles bytes: the minimum-rate guard cuts it, the next source serves', async () => {
    resetFaults();
    depot1.faults.trickle = true;
    const a = newAgent();
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      connect: connector(id, { minBytesPerSecond: 64 * 1024, rateWindowMs: 300 }),
      sources: [depot1.source(), master.source('master')],
    });
    expect(r.source).toEqual(['depot-1', 'master']);
    expect(a.state.health(depot1.url).penaltyReason).toMatch(/bytes\/s|no data/);
    expect(readFileSync(r.path).equals(big)).toBe(true);
  });

  it('a per-request deadline cuts a source that is merely slow, even with no rate floor', async () => {
    resetFaults();
    depot1.faults.trickle = true;
    const a = newAgent();
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      settings: { requestTimeoutMs: 300 },
      sources: [depot1.source(), depot2.source()],
    });
    expect(r.source).toEqual(['depot-1', 'depot-2']);
    expect(a.state.health(depot1.url).penaltyReason).toMatch(/not complete after 300 ms/);
  });

  it('a depot sending more bytes than declared: cut at the signed length, the next source serves', async () => {
    resetFaults();
    depot1.faults.endlessTargets = true;
    const a = newAgent();
    const e = await failure(a.fetch({ name: 'tool', version: '1.0', sources: [depot1.source()] }));
    expect(isDepotsyncError(e, 'too-large')).toBe(true);
    expect(outEntries(a.outDir)).toEqual([]);
    const r = await a.fetch({ name: 'tool', version: '1.0', sources: [depot1.source(), depot2.source()] });
    expect(r.source).toEqual(['depot-2']);
  });

  it('a missing output folder: a clear error before any download', async () => {
    resetFaults();
    const a = newAgent();
    const e = await failure(
      a.fetch({ name: 'tool', out: join(a.dir, 'nope', 'tool'), sources: [depot1.source()] }),
    );
    expect(isDepotsyncError(e, 'not-found')).toBe(true);
    expect(e.message).toMatch(/output folder .*nope does not exist/);
    expect(depot1.requests).toHaveLength(0);
  });

  it('the disk full during assembly: a clear error, no output, staging removed', async () => {
    resetFaults();
    const a = newAgent();
    let written = 0;
    const e = await failure(
      a.fetch({
        name: 'tool',
        version: '1.0',
        sources: [depot1.source()],
        openSink: async (path, size) => {
          const real = await openFileSink(path, size);
          return {
            ...real,
            async write(parts, pos) {
              written += parts.reduce((s, p) => s + p.length, 0);
              if (written > 200_000)
                throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
              return real.write(parts, pos);
            },
          };
        },
      }),
    );
    expect(isDepotsyncError(e, 'disk-full')).toBe(true);
    expect(e.message).toMatch(/no space left/);
    expect(outEntries(a.outDir)).toEqual([]);
  });

  it('a disk that returns other bytes than were written: the whole-file check refuses, no output', async () => {
    resetFaults();
    const a = newAgent();
    const e = await failure(
      a.fetch({
        name: 'tool',
        version: '1.0',
        sources: [depot1.source()],
        openSink: async (path, size) => {
          const real = await openFileSink(path, size);
          return {
            ...real,
            // Reads come back in blocks: flip one byte of the block that holds file offset 70,000.
            async read(into, length, pos) {
              const n = await real.read(into, length, pos);
              if (pos <= 70_000 && 70_000 < pos + n) into[70_000 - pos] = (into[70_000 - pos]! ^ 0x40) & 0xff;
              return n;
            },
          };
        },
      }),
    );
    expect(isDepotsyncError(e, 'corrupt')).toBe(true);
    expect(e.message).toMatch(/assembled file .* bytes at offset \d+ do not match chunk/);
    expect(outEntries(a.outDir)).toEqual([]);
  });

  it('a revoked agent certificate: a clear error at once, no fallback', async () => {
    resetFaults();
    depot1.faults.revoked.add(id.serial);
    const a = newAgent();
    const e = await failure(
      a.fetch({ name: 'tool', version: '1.0', sources: [depot1.source(), master.source('master')] }),
    );
    expect(isDepotsyncError(e, 'forbidden')).toBe(true);
    expect(e.message).toMatch(/depot-1 .*refused this agent: revoked/);
    expect(e.hint).toMatch(/revoked/);
    expect(master.requests).toHaveLength(0);
    expect(outEntries(a.outDir)).toEqual([]);
  });

  it('resumes after an interruption: only the missing chunks are fetched again', async () => {
    resetFaults();
    const a = newAgent();
    const ids = depot1ChunkIds('tool', '1.0');
    depot1.faults.cutAfterRecords = 3;
    const e = await failure(
      a.fetch({ name: 'tool', version: '1.0', settings: { concurrency: 1 }, sources: [depot1.source()] }),
    );
    expect(e.code).toMatch(/truncated|network/);
    expect(outEntries(a.outDir)).toEqual([]);
    depot1.requests.length = 0;
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      settings: { concurrency: 1 },
      sources: [depot1.source()],
    });
    expect(r.chunksFromCache).toBe(3);
    const asked = depot1.requests.flatMap((q) => q.ids ?? []);
    expect(asked.sort()).toEqual(ids.slice(3).sort());
    expect(readFileSync(r.path).equals(big)).toBe(true);
  });

  it('keeps the cache under its limit, and removes an old staging folder without an owner', async () => {
    resetFaults();
    const a = newAgent();
    // An interrupted fetch leaves the chunks it had verified in the cache...
    depot1.faults.cutAfterRecords = 20;
    await failure(
      a.fetch({ name: 'tool', version: '1.0', settings: { concurrency: 1 }, sources: [depot1.source()] }),
    );
    depot1.faults.cutAfterRecords = undefined;
    const cacheBytes = async () => {
      const cache = await FileChunkCache.open(join(a.dir, 'cache'), { logger: silentLogger() });
      try {
        return cache.stats().bytes;
      } finally {
        await cache.close();
      }
    };
    expect(await cacheBytes()).toBeGreaterThan(100_000);
    const stale = join(a.outDir, '.tool.depotsync-staging-0123456789ab');
    mkdirSync(stale);
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(stale, old, old);
    // ...and a fetch that succeeds with a smaller limit trims it.
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      settings: { cacheMaxBytes: 100_000 },
      sources: [depot1.source()],
    });
    expect(r.chunksFromCache).toBeGreaterThan(0);
    expect(readFileSync(r.path).equals(big)).toBe(true);
    expect(outEntries(a.outDir)).toEqual(['tool']);
    expect(await cacheBytes()).toBe(0);
  });

  it('a fetch killed mid-way (kill -9): the next one salvages what it had staged, re-hashed, and downloads the rest', async () => {
    resetFaults();
    const a = newAgent();
    const [path, mbytes] = [...repo.targets.entries()].find(([k]) => k.endsWith('.tool@1.0.json'))!;
    expect(path).toBeTruthy();
    const lengths = decodeManifest(mbytes).files[0]!.chunks.map((c) => c.length);
    const ids = depot1ChunkIds('tool', '1.0');
    const upTo = (n: number) => lengths.slice(0, n).reduce((x, y) => x + y, 0);
    // What the killed fetch left: its pid (dead now), the manifest, and the file's first three chunks
    // plus half of the fourth; the second chunk was changed on disk afterwards.
    const left = join(a.outDir, '.tool.depotsync-staging-aaaaaaaaaaaa');
    mkdirSync(left);
    writeFileSync(join(left, 'owner'), `${spawnSync('true').pid}\n`);
    writeFileSync(join(left, 'manifest.json'), mbytes);
    const partial = Buffer.from(big.subarray(0, upTo(3) + lengths[3]! / 2));
    partial[upTo(1) + 10] ^= 0x01;
    writeFileSync(join(left, 'file'), partial);
    depot1.requests.length = 0;
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      settings: { concurrency: 1 },
      sources: [depot1.source()],
    });
    expect(r.chunksFromCache).toBe(2);
    const asked = depot1.requests.flatMap((q) => q.ids ?? []);
    expect(asked.sort()).toEqual(ids.filter((_, i) => i !== 0 && i !== 2).sort());
    expect(readFileSync(r.path).equals(big)).toBe(true);
    expect(outEntries(a.outDir)).toEqual(['tool']);
  });

  it('a staging folder whose owner still runs (a fetch in progress) is left alone', async () => {
    resetFaults();
    const a = newAgent();
    // Owners that run: another process (a fetch to the same output elsewhere), and this process.
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const busy = [
        join(a.outDir, '.tool.depotsync-staging-bbbbbbbbbbbb'),
        join(a.outDir, '.tool.depotsync-staging-cccccccccccc'),
      ];
      const old = new Date(Date.now() - 2 * 3_600_000);
      for (const [i, dir] of busy.entries()) {
        mkdirSync(dir);
        writeFileSync(join(dir, 'owner'), `${i === 0 ? other.pid : process.pid}\n`);
        utimesSync(dir, old, old);
      }
      const r = await a.fetch({ name: 'tool', version: '1.0', sources: [depot1.source()] });
      expect(r.chunksFromCache).toBe(0);
      expect(outEntries(a.outDir)).toEqual([
        '.tool.depotsync-staging-bbbbbbbbbbbb',
        '.tool.depotsync-staging-cccccccccccc',
        'tool',
      ]);
    } finally {
      other.kill();
    }
  });

  it('the preferred depot offline: the next one serves', async () => {
    resetFaults();
    const gone = await startServer(repo, 'gone');
    const goneSource = gone.source();
    await gone.close();
    const a = newAgent();
    const r = await a.fetch({
      name: 'tool',
      version: '1.0',
      sources: [goneSource, depot2.source(), master.source('master')],
    });
    expect(r.source).toEqual(['depot-2']);
    expect(a.state.health(goneSource.url).penaltyReason).toMatch(/refused|connect/);
  });
});

/** The distinct chunk ids of a published package, in order. */
function depot1ChunkIds(name: string, version: string): string[] {
  const entry = [...repo.targets.entries()].find(([k]) => k.endsWith(`.${name}@${version}.json`))!;
  const m = JSON.parse(entry[1].toString('utf8'));
  const ids: string[] = [];
  for (const f of m.files) {
    const raw = Buffer.from(f.chunks, 'base64');
    for (let at = 0; at < raw.length; at += 36) ids.push(raw.subarray(at, at + 32).toString('hex'));
  }
  return [...new Set(ids)];
}

/**
 * The bin listing `targetPath`, re-signed by an attacker's key (not delegated by targets.json), with the
 * snapshot and timestamp re-signed by the real online keys (compromised) so the forged bin is the one
 * they name: only the bin's signature can catch it.
 */
function forgeBin(targetPath: string): Map<string, Buffer> {
  const attacker = generateKeyPair();
  const ts = repo.files.get('timestamp.json')!;
  const tsDoc = JSON.parse(ts.toString('utf8'));
  const s = tsDoc.signed.meta['snapshot.json'].version as number;
  const snap = repo.files.get(`${s}.snapshot.json`)!;
  const bin = repo.repo.binFor(targetPath);
  const b = JSON.parse(snap.toString('utf8')).signed.meta[`${bin}.json`].version as number;
  const newBin = resign(repo.files.get(`${b}.${bin}.json`)!, [attacker]);
  const newSnap = resign(snap, [repo.keys.snapshot], (x) => {
    x.version = s + 1;
    x.meta[`${bin}.json`] = { version: b, length: newBin.length, hashes: { sha256: sha256(newBin) } };
  });
  const newTs = resign(ts, [repo.keys.timestamp], (x) => {
    x.version += 1;
    x.meta['snapshot.json'] = { version: s + 1, length: newSnap.length, hashes: { sha256: sha256(newSnap) } };
  });
  return new Map([
    ['timestamp.json', newTs],
    [`${s + 1}.snapshot.json`, newSnap],
    [`${b}.${bin}.json`, newBin],
  ]);
}
