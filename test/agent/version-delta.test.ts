import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchPackage } from '../../agent/fetch/fetch.js';
import { MemoryAgentState } from '../../agent/state.js';
import { loadZstdDecoder, type ZstdDecoder } from '../../src/compress/zstd-decoder.js';
import { createLogger } from '../../src/log.js';
import { DirectoryTrustedStore } from '../../src/tuf/client.js';
import {
  agentIdentity,
  Clock,
  connector,
  createRepo,
  pseudoRandomBytes,
  startServer,
  type AgentIdentity,
  type Repo,
  type TestServer,
} from './fixture.js';
import { rebuiltBuild } from '../helpers/tmp.js';

let repo: Repo;
let depot: TestServer;
let id: AgentIdentity;
const clock = new Clock();
const dir = mkdtempSync(join(tmpdir(), 'agent-vdelta-'));

beforeAll(async () => {
  repo = await createRepo(clock);
  id = agentIdentity();
  depot = await startServer(repo, 'depot-1');
  mkdirSync(join(dir, 'out'));
});

afterAll(async () => {
  await depot?.close();
  await repo?.close();
  rmSync(dir, { recursive: true, force: true });
});

const state = new MemoryAgentState();
async function fetch(version: string, zstd?: ZstdDecoder) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.startsWith('{')) lines.push(JSON.parse(l));
      done();
    },
  });
  const r = await fetchPackage({
    name: 'app',
    version,
    out: join(dir, 'out', `app-${version}`),
    sources: [depot.source()],
    connect: connector(id),
    cacheDir: join(dir, 'cache'),
    manifestDir: join(dir, 'manifests'),
    store: new DirectoryTrustedStore(join(dir, 'tuf')),
    fingerprint: repo.fingerprint,
    state,
    now: clock.now,
    logger: createLogger({ level: 'debug', destination: sink }),
    zstd,
  });
  return { r, lines };
}
/** Bytes of chunks the agent asked for whole (`POST /v1/chunks/batch`). */
function wholeAsked(lengths: Map<string, number>): number {
  return depot.requests
    .filter((q) => q.path === '/v1/chunks/batch')
    .flatMap((q) => q.ids ?? [])
    .reduce((s, i) => s + (lengths.get(i) ?? 0), 0);
}
const deltaAsks = () => depot.requests.filter((q) => q.path === '/v1/chunks/delta').length;
const refusedLines = (lines: Array<Record<string, unknown>>) =>
  lines.filter((l) => l.msg === 'chunk delta refused; the chunk is fetched whole');

let current = pseudoRandomBytes(3_000_000, 21);
let n = 1;
/** Publish the next build of the current one and return its bytes and chunk lengths. */
async function nextBuild(): Promise<{ version: string; bytes: Buffer; lengths: Map<string, number> }> {
  n++;
  current = rebuiltBuild(current, { seed: n, edits: 200 });
  const version = `1.${n}`;
  const { manifest: m } = await repo.publish('app', version, [{ path: 'app.bin', data: current }]);
  const lengths = new Map(m.files.flatMap((f) => f.chunks.map((c) => [c.id, c.length] as const)));
  depot.requests.length = 0;
  return { version, bytes: current, lengths };
}

describe('agent fetch: an upgrade as zstd deltas against the version it fetched before', () => {
  it('a rebuilt binary whose chunk ids all change travels as deltas; the output is byte-identical', async () => {
    await repo.publish('app', '1.1', [{ path: 'app.bin', data: current }]);
    n = 1;
    const first = await fetch('1.1');
    expect(first.r.chunksFromDeltas).toBe(0);

    const next = await nextBuild();
    const { r, lines } = await fetch(next.version);
    expect(readFileSync(join(dir, 'out', `app-${next.version}`)).equals(next.bytes)).toBe(true);
    expect(deltaAsks()).toBeGreaterThan(0);
    expect(r.chunksFromDeltas).toBeGreaterThan(r.chunks / 2);
    expect(r.chunksFromOld + r.chunksFromDeltas).toBe(r.chunks);
    expect(wholeAsked(next.lengths)).toBe(0);
    const d = lines.find((l) => l.msg === 'chunks fetched as deltas against the previous version')!;
    expect(d.wireBytes as number).toBeLessThan(next.bytes.length / 20);
    expect(refusedLines(lines)).toEqual([]);
  });

  for (const [mode, decoder] of [
    ['wrong', 'native'],
    ['bomb', 'native'],
    ['truncated', 'native'],
    ['wrong', 'wasm'],
    ['bomb', 'wasm'],
    ['truncated', 'wasm'],
  ] as const) {
    it(`a depot sending ${mode} zstd deltas (${decoder} decoder): refused, fetched whole, the output exact`, async () => {
      depot.faults.zstdDeltas = mode;
      try {
        const next = await nextBuild();
        const zstd = await loadZstdDecoder({ preferWasm: decoder === 'wasm' });
        expect(zstd.implementation).toBe(decoder);
        const { r, lines } = await fetch(next.version, zstd);
        expect(readFileSync(join(dir, 'out', `app-${next.version}`)).equals(next.bytes)).toBe(true);
        expect(refusedLines(lines).length).toBeGreaterThan(0);
        expect(r.chunksFromDeltas).toBeLessThan(r.chunks);
        expect(wholeAsked(next.lengths)).toBeGreaterThan(0);
      } finally {
        depot.faults.zstdDeltas = 'honest';
      }
    });
  }

  it('deltas against bases the depot chose (kind 5) rebuild from the old output; one naming a chunk the agent never had is refused and fetched whole', async () => {
    for (const mode of ['reversed', 'foreign'] as const) {
      depot.faults.chosenBases = mode;
      try {
        const next = await nextBuild();
        const { r, lines } = await fetch(next.version);
        expect(readFileSync(join(dir, 'out', `app-${next.version}`)).equals(next.bytes)).toBe(true);
        if (mode === 'reversed') {
          expect(r.chunksFromDeltas).toBeGreaterThan(r.chunks / 2);
          expect(refusedLines(lines)).toEqual([]);
          expect(wholeAsked(next.lengths)).toBe(0);
        } else {
          const refused = refusedLines(lines);
          expect(refused.length).toBeGreaterThan(0);
          for (const l of refused) expect(String(l.reason)).toMatch(/e{64}|no longer intact/);
          expect(wholeAsked(next.lengths)).toBeGreaterThan(0);
        }
      } finally {
        depot.faults.chosenBases = undefined;
      }
    }
  });

  it('an old output the user changed is not used as a base where it changed', async () => {
    const old = join(dir, 'out', `app-1.${n}`);
    const b = readFileSync(old);
    // Overwrite the whole second half: those old chunks no longer hash to their ids.
    pseudoRandomBytes(b.length - (b.length >> 1), 99).copy(b, b.length >> 1);
    writeFileSync(old, b);
    const next = await nextBuild();
    const { r, lines } = await fetch(next.version);
    expect(readFileSync(join(dir, 'out', `app-${next.version}`)).equals(next.bytes)).toBe(true);
    expect(r.chunksFromDeltas).toBeGreaterThan(0);
    expect(r.chunksFromDeltas).toBeLessThan(r.chunks);
    // Only the chunks whose base changed are fetched whole; the rest rebuilt from intact bases.
    expect(wholeAsked(next.lengths)).toBeGreaterThan(0);
    expect(wholeAsked(next.lengths)).toBeLessThan(next.bytes.length * 0.8);
    expect(refusedLines(lines).every((l) => String(l.reason).includes('no longer intact'))).toBe(true);
  });

  it('with the WebAssembly zstd decoder (an agent without native addons), the same deltas rebuild', async () => {
    const wasm = await loadZstdDecoder({ preferWasm: true });
    expect(wasm.implementation).toBe('wasm');
    const next = await nextBuild();
    const { r, lines } = await fetch(next.version, wasm);
    expect(readFileSync(join(dir, 'out', `app-${next.version}`)).equals(next.bytes)).toBe(true);
    expect(r.chunksFromDeltas).toBeGreaterThan(r.chunks / 2);
    const d = lines.find((l) => l.msg === 'chunks fetched as deltas against the previous version')!;
    expect(d.zstd).toBe('wasm');
    expect(refusedLines(lines)).toEqual([]);
  });

  it('an old output the user removed: no delta is asked for, the chunks come whole', async () => {
    rmSync(join(dir, 'out', `app-1.${n}`));
    const next = await nextBuild();
    const { r } = await fetch(next.version);
    expect(readFileSync(join(dir, 'out', `app-${next.version}`)).equals(next.bytes)).toBe(true);
    expect(deltaAsks()).toBe(0);
    expect(r.chunksFromOld + r.chunksFromDeltas).toBe(0);
    expect(wholeAsked(next.lengths)).toBe(next.bytes.length);
  });

  it('an unchanged chunk is copied from the old output instead of downloaded', async () => {
    n++;
    const version = `1.${n}`;
    const bytes = Buffer.from(current);
    bytes[100] ^= 1; // one chunk changes, the rest is the same as the version fetched last
    current = bytes;
    await repo.publish('app', version, [{ path: 'app.bin', data: bytes }]);
    depot.requests.length = 0;
    const { r } = await fetch(version);
    expect(readFileSync(join(dir, 'out', `app-${version}`)).equals(bytes)).toBe(true);
    expect(r.chunksFromOld).toBe(r.chunks - 1);
    expect(r.chunksFromDeltas).toBe(1);
  });
});
