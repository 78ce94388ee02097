import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adoptDirectory,
  directoryFile,
  loadAdoptedDirectory,
  refreshDirectory,
} from '../../agent/directory.js';
import { DEFAULT_FETCH_SETTINGS } from '../../agent/config.js';
import { fetchPackage } from '../../agent/fetch/fetch.js';
import { RemoteSource, type Source } from '../../agent/fetch/remote.js';
import { rankSources } from '../../agent/sources.js';
import { MemoryAgentState } from '../../agent/state.js';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { issueMachineCertificate } from '../../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../../src/pki/csr.js';
import { DirectoryTrustedStore } from '../../src/tuf/client.js';
import {
  DEPOT_DIRECTORY_TARGET,
  directoryTarget,
  EMPTY_DIRECTORY,
  withEntry,
  withoutEntry,
  type DepotDirectory,
} from '../../src/wire/depot-directory.js';
import {
  agentIdentity,
  Clock,
  createRepo,
  pseudoRandomBytes,
  startServer,
  testCa,
  type AgentIdentity,
  type Repo,
  type TestServer,
} from './fixture.js';

/**
 * The signed depot directory on the agent: adopted from targets.json after the TUF update, merged
 * with --depot flags, refreshed before a fetch; a tampered or rolled-back directory is refused and
 * the agent falls back; a listed depot must present its own machine certificate.
 */
let repo: Repo;
let master: TestServer;
let depot1: TestServer;
let depot2: TestServer;
let impostor: TestServer;
let id: AgentIdentity;
const clock = new Clock();
const dirs: string[] = [];
const log = silentLogger();
const payload = pseudoRandomBytes(200_000, 11);

/** A depot's machine certificate (CN=name, OU=depot) for 127.0.0.1, as a real depot serves with. */
function depotCert(name: string) {
  const { keyPem, csrPem } = createMachineKeyAndCsr({
    machineName: name,
    role: 'depot',
    ipAddresses: ['127.0.0.1'],
  });
  return { keyPem, certPem: issueMachineCertificate(testCa(), csrPem, { machineName: name, role: 'depot' }) };
}

/** The operator's `master directory set/remove`: sign the directory into targets.json. */
function signDirectory(d: DepotDirectory): void {
  for (const f of repo.repo.updateTopTarget({ path: DEPOT_DIRECTORY_TARGET, target: directoryTarget(d) }))
    repo.files.set(f.name, Buffer.from(f.bytes));
}

/** agent.ts's connect: mutual TLS, and a directory depot must present its own machine certificate. */
const connect = (s: Source) =>
  new RemoteSource(
    s,
    new HttpClient({
      baseUrl: s.url,
      caPem: id.caPem,
      certPem: id.certPem,
      keyPem: id.keyPem,
      timeoutMs: 5_000,
      ...(s.fromDirectory ? { serverMachine: { name: s.name, role: 'depot' as const } } : {}),
    }),
  );

function newAgent() {
  const dir = mkdtempSync(join(tmpdir(), 'agent-directory-'));
  dirs.push(dir);
  return { dir, store: new DirectoryTrustedStore(join(dir, 'tuf')), state: new MemoryAgentState() };
}

function refresh(a: ReturnType<typeof newAgent>, sources: Source[]) {
  return refreshDirectory({
    agentDir: a.dir,
    sources,
    connect,
    store: a.store,
    fingerprint: repo.fingerprint,
    state: a.state,
    now: clock.now,
    penaltyMs: 60_000,
    log,
  });
}

const config = (site?: string, depots: Array<{ name: string; url: string; site?: string }> = []) => ({
  masterUrl: master.url,
  ...(site ? { site } : {}),
  depots,
  fetch: { ...DEFAULT_FETCH_SETTINGS, rttTtlMs: 60_000 },
});

let v1: DepotDirectory;

beforeAll(async () => {
  repo = await createRepo(clock);
  await repo.publish('tool', '1.0', [{ path: 'tool.bin', data: payload }]);
  id = agentIdentity('agent-dir');
  master = await startServer(repo, 'master');
  depot1 = await startServer(repo, 'depot-1', testCa(), depotCert('depot-1'));
  depot2 = await startServer(repo, 'depot-2', testCa(), depotCert('depot-2'));
  // A machine of the same CA at an address the directory gives for depot-3.
  impostor = await startServer(repo, 'depot-x', testCa(), depotCert('depot-x'));
  v1 = withEntry(withEntry(EMPTY_DIRECTORY, { name: 'depot-1', url: depot1.url, site: 'lyon' }), {
    name: 'depot-2',
    url: depot2.url,
    site: 'paris',
  });
  signDirectory(v1);
});

afterAll(async () => {
  await Promise.all([master, depot1, depot2, impostor].map((s) => s?.close()));
  await repo?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('agent depot directory', () => {
  it('adopts the verified directory, merges it after the --depot flags and explains the order; fetches from a listed depot', async () => {
    const a = newAgent();
    const r = await refresh(a, [master.source('master')]);
    expect(r).toMatchObject({ source: 'master', changed: true, failures: [] });
    expect(r.adopted?.directory).toEqual(v1);
    expect(JSON.parse(readFileSync(directoryFile(a.dir), 'utf8')).directory).toEqual(v1);

    // depot-1 is also given with --depot under another URL: the flag wins, and flags rank before directory depots.
    const flagged = { name: 'depot-1', url: depot1.url.replace('127.0.0.1', 'localhost'), site: 'lyon' };
    const ranked = await rankSources({
      config: config('paris', [flagged]),
      state: a.state,
      now: clock.now,
      directory: r.adopted?.directory,
    });
    expect(ranked.map((s) => [s.name, s.origin])).toEqual([
      ['depot-2', 'directory'],
      ['depot-1', 'flag'],
      ['master', 'master'],
    ]);
    expect(ranked[0]).toMatchObject({ url: depot2.url, fromDirectory: true });
    expect(ranked[0]!.reasons).toEqual([
      `from the signed depot directory v${v1.version}`,
      'same site (paris)',
      'not probed',
    ]);
    expect(ranked[1]!.reasons[0]).toBe('from --depot (the directory lists it too; the flag wins)');
    // Without a site preference the flagged depot comes first.
    const noSite = await rankSources({
      config: config(undefined, [flagged]),
      state: a.state,
      now: clock.now,
      directory: r.adopted?.directory,
    });
    expect(noSite.map((s) => s.name)).toEqual(['depot-1', 'depot-2', 'master']);

    const out = join(a.dir, 'tool.bin');
    depot2.requests.length = 0;
    const f = await fetchPackage({
      name: 'tool',
      out,
      sources: ranked,
      connect,
      store: a.store,
      state: a.state,
      now: clock.now,
      logger: log,
    });
    expect(f.source).toEqual(['depot-2']);
    expect(readFileSync(out).equals(payload)).toBe(true);
    expect(depot2.requests.some((q) => q.path === '/v1/chunks/batch')).toBe(true);
  });

  it('a tampered directory served by a depot is refused: the depot is penalised and the agent falls back', async () => {
    const a = newAgent();
    const targetsName = repo.repo.currentFiles().find((f) => f.role === 'targets')!.name;
    const doc = JSON.parse(repo.files.get(targetsName)!.toString('utf8'));
    doc.signed.targets[DEPOT_DIRECTORY_TARGET].custom.depotDirectory.depots[0].url = 'https://evil.example';
    depot2.faults.metadata.set(targetsName, Buffer.from(JSON.stringify(doc)));
    try {
      const r = await refresh(a, [depot2.source(), master.source('master')]);
      expect(r.source).toBe('master');
      expect(r.adopted?.directory).toEqual(v1);
      expect(r.failures).toHaveLength(1);
      expect(r.failures[0]!.source).toBe('depot-2');
      expect(r.failures[0]!.error).toMatch(/targets/);
      expect(a.state.health(depot2.url).penaltyUntilMs).toBeGreaterThan(clock.now().getTime());
    } finally {
      depot2.faults.metadata.clear();
    }
  });

  it('a depot listed by the directory must present its own certificate: an impostor at its URL is refused at the TLS layer', async () => {
    const a = newAgent();
    await refresh(a, [master.source('master')]);
    const d = withEntry(v1, { name: 'depot-3', url: impostor.url, site: 'rome' });
    signDirectory(d);
    try {
      const r = await refresh(a, [master.source('master')]);
      expect(r.adopted?.directory.version).toBe(d.version);
      const ranked = await rankSources({
        config: config('rome'),
        state: a.state,
        now: clock.now,
        directory: r.adopted?.directory,
      });
      expect(ranked[0]).toMatchObject({ name: 'depot-3', fromDirectory: true });
      impostor.requests.length = 0;
      const out = join(a.dir, 'tool.bin');
      const f = await fetchPackage({
        name: 'tool',
        out,
        sources: ranked,
        connect,
        store: a.store,
        state: a.state,
        now: clock.now,
        logger: log,
      });
      expect(f.source[0]).not.toBe('depot-3');
      expect(impostor.requests).toEqual([]); // no HTTP request got past the handshake
      expect(a.state.health(impostor.url).penaltyReason).toMatch(/depot depot-x, not depot depot-3/);
    } finally {
      signDirectory(withoutEntry(d, 'depot-3'));
    }
  });

  it('drops a depot that left the directory, and refuses an older directory after a newer one (rollback)', async () => {
    const a = newAgent();
    const old = repo.freeze(); // generation with depot-2 still listed
    const oldVersion = loadAdopted(await refresh(a, [master.source('master')]));
    expect(oldVersion.depots.map((d) => d.name)).toContain('depot-2');
    signDirectory(withoutEntry(oldVersion, 'depot-2'));
    const r = await refresh(a, [master.source('master')]);
    const ranked = await rankSources({
      config: config('paris'),
      state: a.state,
      now: clock.now,
      directory: r.adopted?.directory,
    });
    expect(ranked.map((s) => s.name)).toEqual(['depot-1', 'master']);

    // A lagging depot still serving the old generation (and so the old directory) is refused.
    const lagging = await startServer(old, 'depot-1', testCa(), depotCert('depot-1'));
    try {
      const again = await refresh(a, [lagging.source(), master.source('master')]);
      expect(again.failures[0]).toMatchObject({ source: 'depot-1' });
      expect(again.failures[0]!.error).toMatch(/older|rollback/i);
      expect(again.adopted?.directory.depots.map((d) => d.name)).toEqual(['depot-1']);
    } finally {
      await lagging.close();
    }
    // The adoption check on its own: an older version never replaces a newer one, the file stays.
    const before = readFileSync(directoryFile(a.dir));
    await expect(
      adoptDirectory(a.dir, { directory: oldVersion, generation: 999, source: 'x' }, 'depot-1'),
    ).rejects.toMatchObject({ code: 'version-rollback' });
    const forged = { ...oldVersion, version: r.adopted!.directory.version };
    await expect(
      adoptDirectory(a.dir, { directory: forged, generation: 999, source: 'x' }, 'depot-1'),
    ).rejects.toMatchObject({ code: 'bad-metadata' });
    expect(readFileSync(directoryFile(a.dir)).equals(before)).toBe(true);
  });

  it('a damaged local copy is a clear local error, not a depot penalty', async () => {
    const a = newAgent();
    await refresh(a, [master.source('master')]);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(directoryFile(a.dir), '{"generation": "x"');
    expect(() => loadAdoptedDirectory(a.dir)).toThrow(/damaged|cannot be read/);
    await expect(refresh(a, [master.source('master')])).rejects.toMatchObject({ code: 'corrupt' });
    expect(a.state.health(master.url).penaltyUntilMs).toBe(0);
    expect(existsSync(directoryFile(a.dir))).toBe(true);
  });
});

function loadAdopted(r: { adopted?: { directory: DepotDirectory } | undefined }): DepotDirectory {
  if (!r.adopted) throw new Error('no directory adopted');
  return r.adopted.directory;
}
