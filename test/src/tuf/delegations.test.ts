import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DirectoryTrustedStore,
  MemoryTrustedStore,
  rootFingerprint,
  TufClient,
  type MetadataSource,
  type TrustedStore,
} from '../../../src/tuf/client.js';
import { quoteRoleName, roleFileName } from '../../../src/tuf/context.js';
import { checkHashes } from '../../../src/tuf/hashes.js';
import { makeKey, SpecRepo, type KeyKind } from './spec-repo.js';

/** Records what the client asks the mirror for. */
class CountingSource implements MetadataSource {
  readonly asked: string[] = [];
  constructor(private readonly inner: MetadataSource) {}
  fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    this.asked.push(name);
    return this.inner.fetch(name, maxBytes);
  }
}

async function client(repo: SpecRepo, opts: { store?: TrustedStore; source?: MetadataSource } = {}) {
  const c = await TufClient.open({
    source: opts.source ?? repo.mirror,
    store: opts.store ?? new MemoryTrustedStore(),
    fingerprint: rootFingerprint(repo.root1),
    initialRoot: repo.root1,
    requireConsistentSnapshot: false,
  });
  await c.refresh({ bins: 'none' });
  return c;
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

const doc = (b: Uint8Array) => JSON.parse(Buffer.from(b).toString());

describe('TufClient: key types', () => {
  it.each<KeyKind>(['ed25519', 'ecdsa', 'rsa'])(
    'verifies a repository whose every role uses %s keys',
    async (kind) => {
      const repo = new SpecRepo(kind);
      repo.addTarget('targets', 'a/file.txt', 'hello');
      repo.publish(['targets']);
      const c = await client(repo);
      expect(await c.getTarget('a/file.txt')).toMatchObject({ length: 5 });
      // a new root signed by the old key and a new ECDSA/RSA key of another kind
      const extra = makeKey(kind === 'rsa' ? 'ecdsa' : 'rsa');
      repo.top.root.push(extra);
      repo.publishRoot((s) => ((s.roles as any).root.threshold = 2));
      expect((await c.refresh()).rootVersion).toBe(2);
      // the same, with the new key's signature replaced by a plausible but wrong one: refused
      repo.publishRoot((s) => ((s.roles as any).root.threshold = 2));
      const bad = doc(repo.roots[2]!);
      const other = doc(repo.roots[1]!).signatures.find((s: any) => s.keyid === extra.keyid).sig;
      bad.signatures.find((s: any) => s.keyid === extra.keyid).sig = other;
      repo.mirror.set('3.root.json', Buffer.from(JSON.stringify(bad)));
      await rejects(c.refresh(), 'bad-signature', /^root metadata 3.root.json: threshold not met: 1 of 2/);
    },
  );

  it('takes a keyid as a name (like python-tuf, TAP 12): a key under a keyid that is not its hash verifies', async () => {
    const repo = new SpecRepo();
    const k = makeKey('ecdsa');
    const named = { ...k, keyid: 'my-ecdsa-key' };
    repo.delegate('targets', { name: 'r', keys: [named], paths: ['*'] });
    repo.addTarget('r', 'f', 'x');
    repo.publish();
    const c = await client(repo);
    expect(await c.getTarget('f')).toMatchObject({ length: 1 });
  });

  it('names an unsupported key type or scheme in the error, and uses the other keys', async () => {
    const repo = new SpecRepo();
    const odd = makeKey();
    const oddJson = { keytype: 'sphincs', scheme: 'sphincs-shake-256f', keyval: { public: 'ab' } };
    repo.publishRoot((s) => {
      (s.keys as any)[odd.keyid] = oddJson;
      (s.roles as any).timestamp.keyids.push(odd.keyid);
    });
    repo.publish();
    const c = await client(repo); // the timestamp threshold (1) is met by the ed25519 key
    expect(c.rootVersion).toBe(2);
    repo.publishRoot(
      (s) => {
        (s.keys as any)[odd.keyid] = oddJson;
        (s.roles as any).root = { keyids: [odd.keyid], threshold: 1 };
      },
      [repo.top.root[0]!, { ...odd, sign: () => 'ab' }],
    );
    await rejects(
      c.refresh(),
      'bad-metadata',
      /^root metadata 3.root.json: threshold not met: 0 of 1 valid signatures \(1 key not usable \(.*unsupported signature scheme "sphincs-shake-256f" \(key type "sphincs"\)\)/,
    );
    // a known scheme on the wrong key type is named too
    const ec = makeKey('ecdsa');
    repo.roots.pop();
    repo.rootVersion--;
    repo.publishRoot(
      (s) => {
        (s.keys as any)[ec.keyid] = { ...ec.json, keytype: 'rsa' };
        (s.roles as any).root = { keyids: [ec.keyid], threshold: 1 };
      },
      [repo.top.root[0]!, ec],
    );
    await rejects(c.refresh(), 'bad-metadata', /unsupported key type "rsa" for scheme "ecdsa-sha2-nistp256"/);
  });
});

describe('TufClient: delegations', () => {
  it('follows path patterns in preorder depth-first order; terminating stops the search', async () => {
    const repo = new SpecRepo();
    const [kA, kB, kC, kD] = [makeKey(), makeKey('ecdsa'), makeKey('rsa'), makeKey()];
    repo.delegate('targets', { name: 'A', keys: [kA!], paths: ['*.txt', 'dir/*'] });
    repo.delegate('targets', { name: 'D', keys: [kD!], paths: ['*'] });
    repo.delegate('A', { name: 'B', keys: [kB!], paths: ['x.txt'], terminating: true });
    repo.delegate('A', { name: 'C', keys: [kC!], paths: ['*'] });
    repo.addTarget('B', 'x.txt', 'from B');
    repo.addTarget('C', 'x.txt', 'from C');
    repo.addTarget('C', 'y.txt', 'from C');
    repo.addTarget('D', 'y.txt', 'from D!');
    repo.addTarget('D', 'z.bin', 'zzz');
    repo.addTarget('A', 'dir/a', 'in A');
    repo.publish();
    const counting = new CountingSource(repo.mirror);
    const c = await client(repo, { source: counting });
    counting.asked.length = 0;
    expect(await c.getTarget('x.txt')).toMatchObject({ length: 6 }); // B before C (preorder)
    expect(counting.asked).toEqual(['1.A.json', '1.B.json']);
    expect(await c.getTarget('y.txt')).toMatchObject({ length: 6 }); // C (under A) before D
    expect(await c.getTarget('z.bin')).toMatchObject({ length: 3 }); // only D matches
    expect(await c.getTarget('dir/a')).toMatchObject({ length: 4 });
    expect(await c.getTarget('dir/sub/a')).toBeUndefined(); // '*' does not match '/'
    // terminating B ends the search for x.txt: a target only C or D list is not found
    repo.role('B').targets = {};
    repo.publish(['B']);
    await c.refresh({ bins: 'none' });
    expect(await c.getTarget('x.txt')).toBeUndefined();
  });

  it('finds targets by hash prefix and in succinct hash bins; only the matching bin is fetched', async () => {
    const repo = new SpecRepo();
    const k = makeKey('ecdsa');
    const names = repo.succinct('targets', [k], 3, 'bins');
    expect(names).toEqual(['bins-0', 'bins-1', 'bins-2', 'bins-3', 'bins-4', 'bins-5', 'bins-6', 'bins-7']);
    const paths = Array.from({ length: 12 }, (_, i) => `p/${i}`);
    // the bin of a path: the first 3 bits of the SHA-256 of the path
    const binOf = (p: string) => `bins-${(Buffer.from(sha256hex(p), 'hex')[0]! >> 5).toString(16)}`;
    for (const p of paths) repo.addTarget(binOf(p), p, `content ${p}`);
    repo.publish();
    const counting = new CountingSource(repo.mirror);
    const c = await client(repo, { source: counting });
    counting.asked.length = 0;
    expect(await c.getTarget(paths[0]!)).toMatchObject({ length: `content ${paths[0]}`.length });
    expect(counting.asked).toEqual([`1.${binOf(paths[0]!)}.json`]);
    for (const p of paths) expect(await c.getTarget(p)).toBeDefined();
    expect(c.trusted.binNames()).toEqual(names);

    const hp = new SpecRepo();
    const h = sha256hex('file');
    hp.delegate('targets', { name: 'low', keys: [makeKey()], path_hash_prefixes: [h.slice(0, 2)] });
    hp.delegate('targets', {
      name: 'other',
      keys: [makeKey()],
      path_hash_prefixes: [h[0] === '0' ? '1' : '0'],
    });
    hp.addTarget('low', 'file', 'x');
    hp.publish();
    const c2 = await client(hp);
    expect(await c2.getTarget('file')).toMatchObject({ length: 1 });
  });

  it('counts a delegation threshold over distinct keys of several roles (multi-role)', async () => {
    const repo = new SpecRepo();
    const [k1, k2, k3] = [makeKey(), makeKey('ecdsa'), makeKey('rsa')];
    repo.delegate('targets', { name: 'pair', keys: [k1!, k2!, k3!], threshold: 2, paths: ['*'] });
    repo.addTarget('pair', 't', 'two of three');
    repo.role('pair').signers = [k1!, k3!];
    repo.publish();
    const c = await client(repo);
    expect(await c.getTarget('t')).toMatchObject({ length: 12 });
    repo.role('pair').signers = [k2!];
    repo.publish(['pair']);
    await c.refresh({ bins: 'none' });
    await rejects(
      c.getTarget('t'),
      'threshold-not-met',
      /^pair metadata 2.pair.json: threshold not met: 1 of 2 valid signatures/,
    );
  });

  it('refuses a delegated role the snapshot does not list, and one signed by the wrong key', async () => {
    const repo = new SpecRepo();
    repo.delegate('targets', { name: 'role1', keys: [makeKey()], paths: ['*'] });
    repo.publish();
    const c = await client(repo);
    const snap = repo.mirror;
    // forged role: re-signed by a key the delegation does not name
    repo.role('role1').signers = [makeKey()];
    repo.publish(['role1']);
    await c.refresh({ bins: 'none' });
    await rejects(c.getTarget('x'), 'unknown-key', /^role1 metadata 2.role1.json: threshold not met/);
    expect(snap.has('2.role1.json')).toBe(true);
  });

  it('quotes role names in requests and in the trusted folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tuf-quote-'));
    try {
      const repo = new SpecRepo();
      for (const name of ['?', '#', '/abs', '../up'])
        repo.delegate('targets', { name, keys: [makeKey()], paths: ['*'] });
      repo.publish();
      const counting = new CountingSource(repo.mirror);
      const c = await client(repo, { source: counting, store: new DirectoryTrustedStore(dir) });
      expect(await c.getTarget('nothing')).toBeUndefined();
      expect(counting.asked).toEqual(
        expect.arrayContaining(['1.%3F.json', '1.%23.json', '1.%2Fabs.json', '1...%2Fup.json']),
      );
      expect((await readdir(dir)).sort()).toEqual([
        '%23.json',
        '%2Fabs.json',
        '%3F.json',
        '..%2Fup.json',
        'root.json',
        'snapshot.json',
        'targets.json',
        'timestamp.json',
      ]);
      expect(quoteRoleName("a b!'()*~._-")).toBe('a%20b%21%27%28%29%2A~._-');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('TufClient: hashes and consistent_snapshot', () => {
  it('checks every listed hash (sha512 only, both, tampered); refuses an unknown algorithm', () => {
    const b = Buffer.from('data');
    const sha512 = createHashHex('sha512', b);
    expect(() => checkHashes(b, { sha512 }, 'f', 'p')).not.toThrow();
    expect(() => checkHashes(b, { sha256: createHashHex('sha256', b), sha512 }, 'f', 'p')).not.toThrow();
    expect(() =>
      checkHashes(
        b,
        { sha256: createHashHex('sha256', b), sha512: createHashHex('sha512', Buffer.from('x')) },
        'f',
        'p',
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'hash-mismatch',
        message: expect.stringMatching(/^f: sha512 .* does not match the one in p/),
      }),
    );
    expect(() => checkHashes(b, { md5: 'ab' }, 'f', 'p')).toThrow(
      expect.objectContaining({
        code: 'bad-metadata',
        message: expect.stringMatching(/"md5" hash, an algorithm this client does not support/),
      }),
    );
  });

  it('lists sha512-only targets and verifies sha512-only metadata entries', async () => {
    const repo = new SpecRepo();
    repo.metaHashes = ['sha512'];
    repo.addTarget('targets', 'only512', 'content', ['sha512']);
    repo.publish(['targets']);
    const c = await client(repo);
    const t = await c.getTarget('only512');
    expect(Object.keys(t!.hashes)).toEqual(['sha512']);
    // a snapshot of the same length that is not the one the timestamp's sha512 names is refused
    repo.publish();
    const snap = doc(await repo.mirror.fetch('2.snapshot.json', 1e6));
    const sig: string = snap.signatures[0].sig;
    snap.signatures[0].sig = (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1);
    repo.mirror.set('2.snapshot.json', Buffer.from(JSON.stringify(snap)));
    await rejects(
      c.refresh(),
      'hash-mismatch',
      /^snapshot metadata 2.snapshot.json: sha512 [0-9a-f]{128} does not match the one in timestamp.json/,
    );
  });

  it('requests unversioned names when consistent_snapshot is false; depotsync clients refuse such roots', async () => {
    const repo = new SpecRepo('ecdsa', false);
    repo.delegate('targets', { name: 'del', keys: [makeKey('rsa')], paths: ['*'] });
    repo.addTarget('del', 'f', 'abc');
    repo.publish();
    const counting = new CountingSource(repo.mirror);
    const c = await client(repo, { source: counting });
    expect(await c.getTarget('f')).toMatchObject({ length: 3 });
    expect(counting.asked).toEqual([
      '2.root.json',
      'timestamp.json',
      'snapshot.json',
      'targets.json',
      'del.json',
    ]);
    expect(roleFileName('del', 4, false)).toBe('del.json');
    expect(roleFileName('root', 4, false)).toBe('4.root.json');
    const strict = await TufClient.open({
      source: repo.mirror,
      store: new MemoryTrustedStore(),
      fingerprint: rootFingerprint(repo.root1),
      initialRoot: repo.root1,
    });
    await rejects(strict.refresh(), 'bad-metadata', /consistent_snapshot is false/);
  });

  it('refuses metadata whose signatures carry one keyid twice', async () => {
    const repo = new SpecRepo();
    repo.publish([], (role, bytes) => {
      if (role !== 'snapshot') return bytes;
      const d = doc(bytes);
      d.signatures.push(d.signatures[0]);
      return Buffer.from(JSON.stringify(d));
    });
    const c = await TufClient.open({
      source: repo.mirror,
      store: new MemoryTrustedStore(),
      fingerprint: rootFingerprint(repo.root1),
      initialRoot: repo.root1,
    });
    await rejects(
      c.refresh(),
      'bad-metadata',
      /^snapshot metadata 1.snapshot.json: two signatures carry keyid .*; a keyid may sign once/,
    );
  });
});

import { createHash } from 'node:crypto';
function sha256hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
function createHashHex(algo: string, b: Buffer): string {
  return createHash(algo).update(b).digest('hex');
}
void afterEach;
