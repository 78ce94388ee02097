import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchPackage } from '../../agent/fetch/fetch.js';
import { MemoryAgentState } from '../../agent/state.js';
import { DirectoryTrustedStore } from '../../src/tuf/client.js';
import {
  agentIdentity,
  Clock,
  connector,
  createRepo,
  pseudoRandomBytes,
  sha256,
  startServer,
  type AgentIdentity,
  type Repo,
  type TestServer,
} from './fixture.js';

let repo: Repo;
let depot: TestServer;
let id: AgentIdentity;
const clock = new Clock();
const dir = mkdtempSync(join(tmpdir(), 'agent-mdelta-'));
const v1 = pseudoRandomBytes(4_000_000, 11);
/** Version n: version 1 with 100 bytes changed at three places (a few chunk ids change). */
function version(n: number): Buffer {
  const b = Buffer.from(v1);
  for (const at of [50_000, 2_000_000, 3_900_000]) pseudoRandomBytes(100, at + n).copy(b, at);
  return b;
}

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
const manifests = join(dir, 'manifests');
function fetch(version: string) {
  return fetchPackage({
    name: 'app',
    version,
    out: join(dir, 'out', `app-${version}`),
    sources: [depot.source()],
    connect: connector(id),
    cacheDir: join(dir, 'cache'),
    manifestDir: manifests,
    store: new DirectoryTrustedStore(join(dir, 'tuf')),
    fingerprint: repo.fingerprint,
    state,
    now: clock.now,
  });
}
const deltaAsks = () => depot.requests.filter((r) => r.path.startsWith('/v1/targets-delta/'));
const wholeAsks = () => depot.requests.filter((r) => r.path.startsWith('/v1/targets/'));

describe('agent fetch: the manifest of an upgrade as a delta against the one the agent kept', () => {
  it('keeps the manifest it fetched; the next version of the package comes as a delta of it', async () => {
    const p1 = await repo.publish('app', '1.0', [{ path: 'app.bin', data: v1 }]);
    await fetch('1.0');
    expect(deltaAsks()).toEqual([]);
    const kept = `${sha256(p1.bytes)}.app@1.0.json`;
    // Beside it, the output it was written to (the next upgrade reads the old chunks back from there).
    expect(readdirSync(manifests)).toEqual([kept, `${kept}.out`]);

    const p2 = await repo.publish('app', '1.1', [{ path: 'app.bin', data: version(1) }]);
    depot.requests.length = 0;
    const r = await fetch('1.1');
    expect(r.version).toBe('1.1');
    expect(readFileSync(join(dir, 'out', 'app-1.1')).equals(version(1))).toBe(true);
    const name2 = `${sha256(p2.bytes)}.app@1.1.json`;
    expect(deltaAsks().map((q) => q.path)).toEqual([`/v1/targets-delta/${kept}/${name2}`]);
    expect(wholeAsks()).toEqual([]);
    // Only the newest manifest of the package is kept.
    expect(readdirSync(manifests)).toEqual([name2, `${name2}.out`]);
  });

  it('a kept manifest that no longer matches its hash is removed; the manifest is fetched whole', async () => {
    const [kept] = readdirSync(manifests);
    const f = join(manifests, kept!);
    const b = readFileSync(f);
    b[10] ^= 1;
    writeFileSync(f, b);
    const p3 = await repo.publish('app', '1.2', [{ path: 'app.bin', data: version(2) }]);
    depot.requests.length = 0;
    await fetch('1.2');
    expect(readFileSync(join(dir, 'out', 'app-1.2')).equals(version(2))).toBe(true);
    expect(deltaAsks()).toEqual([]);
    expect(wholeAsks()).toHaveLength(1);
    const name3 = `${sha256(p3.bytes)}.app@1.2.json`;
    expect(readdirSync(manifests)).toEqual([name3, `${name3}.out`]);
  });
});
