import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DirectorySource,
  DirectoryTrustedStore,
  MemorySource,
  MemoryTrustedStore,
  rootFingerprint,
  TufClient,
  type MetadataSource,
  type TrustedStore,
} from '../../../src/tuf/client.js';
import { generateKeyPair } from '../../../src/tuf/keys.js';
import { binFor, metadataDelta } from '../../../src/tuf/repository.js';
import {
  currentFile,
  DAY,
  HOUR,
  makeFixture,
  resign,
  sha256,
  target,
  timestampFor,
  type Fixture,
} from './fixture.js';

/** Counts what the client asks the source for. */
class CountingSource implements MetadataSource {
  readonly asked: string[] = [];
  constructor(private readonly inner: MetadataSource) {}
  fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    this.asked.push(name);
    return this.inner.fetch(name, maxBytes);
  }
}

function open(f: Fixture, opts: { store?: TrustedStore; source?: MetadataSource } = {}) {
  return TufClient.open({
    source: opts.source ?? f.mirror,
    store: opts.store ?? new MemoryTrustedStore(),
    fingerprint: rootFingerprint(f.root1),
    now: f.clock.now,
  });
}

async function rejects(p: Promise<unknown>, code: string, message?: RegExp) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as Error & { code: string },
  );
  expect(err, 'expected a rejection').toBeDefined();
  expect({ code: err!.code, message: err!.message }).toMatchObject({
    code,
    ...(message ? { message: expect.stringMatching(message) } : {}),
  });
}

const json = (b: Uint8Array) => JSON.parse(Buffer.from(b).toString());

describe('TufClient: round trip', () => {
  it('verifies 300 targets over 256 bins and looks each up', async () => {
    const f = makeFixture();
    const changes = Array.from({ length: 300 }, (_, i) => target(i));
    f.publish(f.repo.updateTargets(changes));
    const client = await open(f);
    const r = await client.refresh();
    expect(r).toMatchObject({
      rootVersion: 1,
      generation: 2,
      timestampVersion: 2,
      changed: true,
      staleBins: [],
    });
    expect(r.fetchedBins).toHaveLength(256);
    for (const c of changes) expect(await client.getTarget(c.path)).toEqual(f.repo.getTarget(c.path));
    expect([...client.targets()]).toHaveLength(300);
    expect(await client.getTarget('pkg9999/none/manifest.json')).toBeUndefined();
    await rejects(client.getTarget('../escape'), 'bad-path');
    // nothing new: only the timestamp is fetched
    const counting = new CountingSource(f.mirror);
    const again = await TufClient.open({
      source: counting,
      store: new MemoryTrustedStore(),
      fingerprint: rootFingerprint(f.root1),
      now: f.clock.now,
    });
    await again.refresh({ bins: 'none' });
    counting.asked.length = 0;
    expect((await again.refresh()).changed).toBe(false);
    expect(counting.asked.filter((n) => n !== 'timestamp.json' && !n.endsWith('.root.json')).length).toBe(
      256,
    ); // first full fetch of bins
    counting.asked.length = 0;
    expect((await again.refresh()).fetchedBins).toEqual([]);
    expect(counting.asked).toEqual(['2.root.json', 'timestamp.json']);
  });

  it('fetches only the one bin whose version changed (catalog delta)', async () => {
    const f = makeFixture();
    f.publish(f.repo.updateTargets(Array.from({ length: 300 }, (_, i) => target(i))));
    const source = new CountingSource(f.mirror);
    const client = await TufClient.open({
      source,
      store: new MemoryTrustedStore(),
      fingerprint: rootFingerprint(f.root1),
      now: f.clock.now,
    });
    await client.refresh();
    const added = target(300);
    const files = f.repo.addTarget(added.path, added.target);
    f.publish(files);
    const r = await client.refresh({ bins: 'none' });
    expect(r.staleBins).toEqual([binFor(added.path)]);
    source.asked.length = 0;
    expect(await client.getTarget(added.path)).toEqual(f.repo.getTarget(added.path));
    expect(source.asked).toEqual([files[0]!.name]);
    expect(files[0]!.role).toBe(binFor(added.path));
    expect((await client.refresh()).fetchedBins).toEqual([]);
  });

  it('keeps trusted metadata in a folder and resumes with it after a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tuf-client-'));
    try {
      const f = makeFixture();
      f.publish(f.repo.updateTargets(Array.from({ length: 50 }, (_, i) => target(i))));
      await (await open(f, { store: new DirectoryTrustedStore(dir, { keepRootHistory: true }) })).refresh();
      const added = target(77);
      const files = f.repo.addTarget(added.path, added.target);
      f.publish(files);
      const source = new CountingSource(f.mirror);
      // no fingerprint needed once a root is trusted
      const client = await TufClient.open({
        source,
        store: new DirectoryTrustedStore(dir),
        now: f.clock.now,
      });
      const r = await client.refresh();
      expect(r.fetchedBins).toEqual([binFor(added.path)]);
      expect(source.asked).toEqual(['2.root.json', 'timestamp.json', '3.snapshot.json', files[0]!.name]);
      expect(client.trustedFiles().map((x) => x.name)).toContain('3.snapshot.json');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('verifies an offline bundle through the same source interface', async () => {
    const f = makeFixture();
    const depot = await open(f);
    await depot.refresh();
    // the master exports only what changed since the depot's generation
    const changed = f.repo.updateTargets([target(1), target(2)]);
    const bundle = new MemorySource(
      changed.map((x) => [x.name, x.bytes] as const),
      'bundle depot-7.bundle',
    );
    const offline = await TufClient.open({
      source: bundle,
      store: new MemoryTrustedStore(),
      initialRoot: f.root1,
      fingerprint: rootFingerprint(f.root1),
      now: f.clock.now,
    });
    await rejects(
      offline.refresh(),
      'not-found',
      /^metadata 1.targets.json: not found in bundle depot-7.bundle$/,
    ); // a fresh client needs the full catalog
    const r = await TufClient.open({ source: bundle, store: storeOf(depot), now: f.clock.now }).then((c) =>
      c.refresh(),
    );
    expect(r.generation).toBe(2);
    bundle.delete(changed[0]!.name);
    const f2 = await TufClient.open({ source: bundle, store: storeOf(depot), now: f.clock.now });
    await rejects(f2.refresh(), 'not-found', new RegExp(changed[0]!.name.replace('.', '\\.')));
  });
});

describe('DirectorySource', () => {
  it('serves an unpacked bundle folder with size caps and plain names only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tuf-dirsource-'));
    try {
      const f = makeFixture({ options: { binCount: 16 } });
      for (const file of f.repo.currentFiles()) await writeFile(join(dir, file.name), file.bytes);
      const source = new DirectorySource(dir);
      expect((await (await open(f, { source })).refresh()).generation).toBe(1);
      await rejects(source.fetch('timestamp.json', 10), 'too-large');
      await rejects(source.fetch('9.root.json', 1000), 'not-found');
      await rejects(source.fetch('../timestamp.json', 1000), 'bad-path');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('metadataDelta (offline bundle contents)', () => {
  it('names exactly the files that carry a client from generation A to B', async () => {
    const f = makeFixture();
    const depot = await open(f);
    await depot.refresh();
    const fromSnapshot = depot.trusted.snapshot!.bytes;
    const next = generateKeyPair();
    f.publish(
      f.repo.rotateRoot({ root: { keys: [next.publicKey], threshold: 1 } }, [
        f.keys.root[0]!.signer,
        next.signer,
      ]),
    );
    const changed = f.repo.updateTargets([target(1), target(2)]);
    f.publish(changed);
    // The root rotation is generation 2 (a root travels with a new snapshot), the targets change 3.
    const names = metadataDelta({
      fromSnapshot,
      fromRootVersion: depot.rootVersion,
      toSnapshot: currentFile(f, '3.snapshot.json'),
      toRootVersion: f.repo.rootVersion,
    });
    const bins = changed.filter((x) => x.role.startsWith('bin-')).map((x) => x.name);
    expect(names.sort()).toEqual(['2.root.json', 'timestamp.json', '3.snapshot.json', ...bins].sort());
    const bundle = new MemorySource(
      await Promise.all(names.map(async (n) => [n, await f.mirror.fetch(n, 1e9)] as const)),
      'bundle',
    );
    const r = await (
      await TufClient.open({ source: bundle, store: storeOf(depot), now: f.clock.now })
    ).refresh();
    expect(r).toMatchObject({ rootVersion: 2, generation: 3, fetchedBins: bins.map((n) => n.split('.')[1]) });
    // a fresh client needs every targets role
    expect(
      metadataDelta({ fromRootVersion: 1, toSnapshot: currentFile(f, '3.snapshot.json'), toRootVersion: 2 }),
    ).toHaveLength(1 + 2 + 257);
  });
});

/** A store holding the depot's current trusted files (as if the depot had persisted them). */
function storeOf(client: TufClient): MemoryTrustedStore {
  const s = new MemoryTrustedStore();
  for (const f of client.trustedFiles()) void s.save(f.role, f.bytes, f.version);
  return s;
}

describe('TufClient: attacks', () => {
  it('refuses a timestamp signed by an unknown key, naming role, file and key', async () => {
    const f = makeFixture();
    const stranger = generateKeyPair();
    f.mirror.set(
      'timestamp.json',
      resign(currentFile(f, 'timestamp.json'), [stranger], () => {}),
    );
    await rejects(
      (await open(f)).refresh(),
      'unknown-key',
      new RegExp(
        `^timestamp metadata timestamp.json: threshold not met: 0 of 1 valid signatures \\(1 signature by unknown key ${stranger.keyid.slice(0, 8)}…\\)$`,
      ),
    );
  });

  it('refuses metadata changed after signing', async () => {
    const f = makeFixture();
    const doc = json(currentFile(f, 'timestamp.json'));
    doc.signed.expires = '2099-01-01T00:00:00Z';
    f.mirror.set('timestamp.json', Buffer.from(JSON.stringify(doc)));
    await rejects(
      (await open(f)).refresh(),
      'bad-signature',
      /timestamp metadata timestamp.json: threshold not met: 0 of 1/,
    );
  });

  it('refuses an expired timestamp (freeze) until the master re-signs it', async () => {
    const f = makeFixture();
    const client = await open(f);
    await client.refresh();
    f.clock.advance(25 * HOUR);
    await rejects(
      client.refresh(),
      'expired',
      /^timestamp metadata timestamp.json: version 1 expired at 2030-01-02T00:00:00Z/,
    );
    f.publish(f.repo.refresh());
    expect((await client.refresh()).timestampVersion).toBe(2);
  });

  it('refuses an expired root (freeze) even when online roles are fresh', async () => {
    const f = makeFixture();
    const client = await open(f);
    f.clock.advance(366 * DAY);
    f.publish(f.repo.refresh());
    await rejects(client.refresh(), 'expired', /^root metadata 1.root.json: version 1 expired/);
  });

  it('refuses a timestamp older than the trusted one (rollback)', async () => {
    const f = makeFixture();
    const client = await open(f);
    f.publish(f.repo.addTarget(target(1).path, target(1).target));
    const old = currentFile(f, 'timestamp.json');
    f.publish(f.repo.addTarget(target(2).path, target(2).target));
    await client.refresh();
    f.mirror.set('timestamp.json', old);
    await rejects(
      client.refresh(),
      'version-rollback',
      /timestamp metadata timestamp.json: version 2 is older than the trusted version 3/,
    );
  });

  it('refuses a snapshot that lowers or drops a bin version (rollback)', async () => {
    const f = makeFixture();
    const t = target(1);
    const bin = binFor(t.path);
    f.publish(f.repo.addTarget(t.path, t.target));
    const client = await open(f);
    await client.refresh();
    // an attacker holding the online snapshot and timestamp keys re-lists the bin at version 1
    const mutations = [(m: any) => (m[`${bin}.json`] = { version: 1 }), (m: any) => delete m[`${bin}.json`]];
    for (const [i, mutate] of mutations.entries()) {
      const v = 3 + i; // the forged timestamp of the first round is trusted now (it was validly signed)
      const snap = resign(currentFile(f, '2.snapshot.json'), [f.keys.snapshot], (s) => {
        s.version = v;
        mutate(s.meta);
      });
      f.mirror.set(`${v}.snapshot.json`, snap);
      f.mirror.set('timestamp.json', timestampFor(f, snap, f.keys.timestamp, v));
      await rejects(
        client.refresh(),
        'version-rollback',
        new RegExp(`^snapshot metadata ${v}.snapshot.json: ${bin}.json`),
      );
    }
  });

  it('refuses an old bin served under the new version name (rollback)', async () => {
    const f = makeFixture();
    const t = target(1);
    const bin = binFor(t.path);
    const client = await open(f);
    await client.refresh();
    f.publish(f.repo.addTarget(t.path, t.target));
    f.mirror.set(`2.${bin}.json`, await f.mirror.fetch(`1.${bin}.json`, 1e6));
    await rejects(
      client.refresh(),
      'version-rollback',
      new RegExp(
        `^${bin} metadata 2.${bin}.json: version 1 is older than version 2 named by 2.snapshot.json`,
      ),
    );
  });

  it('refuses a snapshot other than the one the timestamp names (mix-and-match)', async () => {
    const f = makeFixture();
    const client = await open(f);
    await client.refresh();
    f.publish(f.repo.addTarget(target(1).path, target(1).target));
    // same version, validly signed by the snapshot key, but not the bytes the timestamp names
    const other = resign(
      currentFile(f, '2.snapshot.json'),
      [f.keys.snapshot],
      (s) => (s.expires = '2030-01-05T00:00:00Z'),
    );
    f.mirror.set('2.snapshot.json', other);
    await rejects(client.refresh(), 'hash-mismatch', /^snapshot metadata 2.snapshot.json: (length|sha256)/);
  });

  it('walks root v1 -> v3 with a root key and a timestamp key rotation, and recovers from fast-forward', async () => {
    const f = makeFixture();
    const client = await open(f);
    await client.refresh();
    // the old timestamp key leaks; the attacker fast-forwards the timestamp version
    const ff = resign(currentFile(f, 'timestamp.json'), [f.keys.timestamp], (s) => (s.version = 999_999));
    f.mirror.set('timestamp.json', ff);
    expect((await client.refresh()).timestampVersion).toBe(999_999);
    // the master rotates: new root key (v2), new timestamp key (v3)
    const root2 = generateKeyPair();
    const ts2 = generateKeyPair();
    f.publish(
      f.repo.rotateRoot({ root: { keys: [root2.publicKey], threshold: 1 } }, [
        f.keys.root[0]!.signer,
        root2.signer,
      ]),
    );
    f.publish(f.repo.rotateRoot({ timestamp: ts2.publicKey }, [root2.signer], { timestamp: ts2.signer }));
    const r = await client.refresh();
    expect(r).toMatchObject({
      rootVersion: 3,
      rootsFetched: [2, 3],
      onlineKeysRotated: true,
      timestampVersion: 3,
      generation: 3,
    });
    // the leaked key no longer counts
    f.mirror.set(
      'timestamp.json',
      resign(currentFile(f, 'timestamp.json'), [f.keys.timestamp], (s) => (s.version = 4)),
    );
    await rejects(client.refresh(), 'unknown-key', /^timestamp metadata timestamp.json/);
    // a new client bootstrapping from the pinned 1.root.json walks the same chain
    f.mirror.set('timestamp.json', currentFile(f, 'timestamp.json'));
    expect((await (await open(f)).refresh()).rootVersion).toBe(3);
  });

  it('needs 2 of 3 root keys, and a key listed twice or signing twice does not make 2', async () => {
    const f = makeFixture({ rootKeys: 3, threshold: 2 });
    const [k0, k1, k2] = f.keys.root as [any, any, any];
    expect(() => f.repo.rotateRoot({}, [k0.signer])).toThrow(/threshold of the old root keys/);
    const v2 = f.repo.rotateRoot({}, [k0.signer, k2.signer]);
    const good = v2[0]!.bytes;
    const client = await open(f);
    // one key signing twice: the keyid appears twice in the signatures, refused outright
    f.mirror.set(
      '2.root.json',
      resign(good, [k0, k0], () => {}),
    );
    await rejects(
      client.refresh(),
      'bad-metadata',
      /^root metadata 2.root.json: two signatures carry keyid .*; a keyid may sign once/,
    );
    // one key listed twice in the new root's root role: refused as malformed before any counting
    // (the counting itself is covered in verify.test.ts)
    f.mirror.set(
      '2.root.json',
      resign(good, [k0, k1], (s) => (s.roles.root.keyids = [k0.keyid, k0.keyid])),
    );
    await rejects(client.refresh(), 'bad-metadata', /^root metadata 2.root.json: schema: duplicate key IDs/);
    f.mirror.set('2.root.json', good);
    expect((await client.refresh()).rootVersion).toBe(2);
  });

  it('refuses oversized metadata before parsing it', async () => {
    const f = makeFixture();
    const client = await open(f);
    f.mirror.set('timestamp.json', Buffer.alloc(20_000, 0x20));
    await rejects(
      client.refresh(),
      'too-large',
      /timestamp.json: 20000 bytes exceeds the limit of 16384 bytes/,
    );
    // a source that ignores the cap is refused by the client itself, still before parsing
    const careless: MetadataSource = {
      fetch: (name) =>
        name === 'timestamp.json' ? Promise.resolve(Buffer.alloc(20_000, 0x7b)) : f.mirror.fetch(name, 1e9),
    };
    const c2 = await open(f, { source: careless });
    await rejects(c2.refresh(), 'too-large');
    // configurable caps
    f.mirror.set('timestamp.json', currentFile(f, 'timestamp.json'));
    const small = await TufClient.open({
      source: f.mirror,
      store: new MemoryTrustedStore(),
      fingerprint: rootFingerprint(f.root1),
      now: f.clock.now,
      limits: { targetsMaxBytes: 100 },
    });
    await rejects(small.refresh(), 'too-large', /1.targets.json/);
  });

  it('refuses a bin that lists a traversal path or a target outside its hash prefix', async () => {
    const f = makeFixture({ options: { binCount: 16 } });
    const client = await open(f);
    await client.refresh();
    const evil = '../../etc/cron.d/x';
    const bin = binFor(evil, 16);
    const forged = resign(currentFile(f, `1.${bin}.json`), [f.keys.targets], (s) => {
      s.version = 2;
      s.targets[evil] = { length: 1, hashes: { sha256: sha256('x') } };
    });
    const snap = resign(currentFile(f, '1.snapshot.json'), [f.keys.snapshot], (s) => {
      s.version = 2;
      s.meta[`${bin}.json`] = { version: 2 };
    });
    f.mirror.set(`2.${bin}.json`, forged);
    f.mirror.set('2.snapshot.json', snap);
    f.mirror.set('timestamp.json', timestampFor(f, snap, f.keys.timestamp, 2));
    await rejects(client.refresh(), 'bad-path', new RegExp(`^${bin} metadata 2.${bin}.json: target path`));
  });

  it('bootstraps only from the pinned fingerprint', async () => {
    const f = makeFixture();
    const other = makeFixture();
    await rejects(
      TufClient.open({
        source: other.mirror,
        store: new MemoryTrustedStore(),
        fingerprint: rootFingerprint(f.root1),
      }),
      'hash-mismatch',
      /does not match the pinned fingerprint/,
    );
    await rejects(
      TufClient.open({ source: f.mirror, store: new MemoryTrustedStore() }),
      'bad-input',
      /no root fingerprint/,
    );
  });
});
