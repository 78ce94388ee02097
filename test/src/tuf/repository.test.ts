import { describe, expect, it } from 'vitest';
import { binFor, binPrefixes, targetPathHash, TufRepository } from '../../../src/tuf/repository.js';
import { generateKeyPair } from '../../../src/tuf/keys.js';
import { ROOT_CA_FIELD } from '../../../src/tuf/root-ca.js';
import { DAY, HOUR, makeFixture, sha256, target } from './fixture.js';

const json = (b: Uint8Array) => JSON.parse(Buffer.from(b).toString('utf8'));

describe('hashed bins', () => {
  it('names 16, 256 and 4096 bins by hash prefix', () => {
    expect(binPrefixes(16)).toHaveLength(16);
    expect(binPrefixes(256)[0]).toBe('00');
    expect(binPrefixes(256)[255]).toBe('ff');
    expect(binPrefixes(4096)[4095]).toBe('fff');
    const p = 'pkg/1.0/manifest.json';
    expect(binFor(p)).toBe(`bin-${targetPathHash(p).slice(0, 2)}`);
    expect(binFor(p, 16)).toBe(`bin-${sha256(p).slice(0, 1)}`);
    expect(binFor(p, 4096)).toBe(`bin-${sha256(p).slice(0, 3)}`);
  });
});

describe('TufRepository', () => {
  it('creates root v1, targets delegating to 256 hashed bins, snapshot and timestamp', () => {
    const f = makeFixture();
    const names = f.repo.currentFiles().map((x) => x.name);
    expect(names).toContain('1.root.json');
    expect(names).toContain('1.targets.json');
    expect(names).toContain('1.bin-00.json');
    expect(names).toContain('1.bin-ff.json');
    expect(names).toContain('1.snapshot.json');
    expect(names).toContain('timestamp.json');
    expect(names).toHaveLength(256 + 4);
    const targets = json(f.repo.currentFiles().find((x) => x.name === '1.targets.json')!.bytes);
    expect(targets.signed.delegations.roles).toHaveLength(256);
    expect(targets.signed.delegations.roles[0]).toMatchObject({
      name: 'bin-00',
      path_hash_prefixes: ['00'],
      terminating: true,
      threshold: 1,
    });
    const root = json(f.root1);
    expect(root.signed.consistent_snapshot).toBe(true);
    expect(root.signed.expires).toBe('2031-01-01T00:00:00Z');
    // compact JSON, no pretty printing
    expect(Buffer.from(f.root1).toString()).not.toContain('\n');
    const ts = json(f.repo.currentFiles().find((x) => x.name === 'timestamp.json')!.bytes);
    expect(ts.signed.expires).toBe('2030-01-02T00:00:00Z');
    expect(ts.signed.meta['snapshot.json']).toMatchObject({
      version: 1,
      length: expect.any(Number),
      hashes: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
    });
  });

  it('re-signs only the touched bin, the snapshot and the timestamp', () => {
    const f = makeFixture();
    const t = target(1);
    const files = f.repo.addTarget(t.path, t.target);
    const bin = binFor(t.path);
    expect(files.map((x) => x.name)).toEqual([`2.${bin}.json`, '2.snapshot.json', 'timestamp.json']);
    expect(f.repo.generation).toBe(2);
    expect(f.repo.getTarget(t.path)).toEqual({
      path: t.path,
      length: t.target.length,
      hashes: { sha256: t.target.sha256 },
      custom: t.target.custom,
    });
    const snap = json(files[1]!.bytes);
    expect(snap.signed.meta[`${bin}.json`]).toEqual({ version: 2 });
    expect(snap.signed.meta['targets.json']).toEqual({ version: 1 });
    // same target again: nothing to sign
    expect(f.repo.addTarget(t.path, t.target)).toEqual([]);
    // batch over two bins: two bins, one snapshot, one timestamp
    const batch = f.repo.updateTargets([target(2), target(3), { path: t.path, remove: true }]);
    expect(batch.filter((x) => x.role.startsWith('bin-')).length).toBe(
      new Set([2, 3, 1].map((i) => binFor(target(i).path))).size,
    );
    expect(batch.filter((x) => x.role === 'snapshot')).toHaveLength(1);
    expect(f.repo.getTarget(t.path)).toBeUndefined();
  });

  it('validates targets before signing anything', () => {
    const f = makeFixture();
    const gen = f.repo.generation;
    expect(() =>
      f.repo.updateTargets([target(1), { path: '../etc/passwd', target: target(2).target }]),
    ).toThrow(expect.objectContaining({ code: 'bad-path' }));
    expect(() => f.repo.addTarget('/abs', target(1).target)).toThrow(
      expect.objectContaining({ code: 'bad-path' }),
    );
    expect(() => f.repo.addTarget('a/./b', target(1).target)).toThrow(
      expect.objectContaining({ code: 'bad-path' }),
    );
    expect(() => f.repo.addTarget('ok', { ...target(1).target, sha256: 'abc' })).toThrow(/sha256 must be 64/);
    expect(() => f.repo.addTarget('ok', { ...target(1).target, custom: { ratio: 0.5 } })).toThrow(
      /canonical JSON/,
    );
    expect(() => f.repo.removeTarget('missing')).toThrow(expect.objectContaining({ code: 'not-found' }));
    expect(f.repo.generation).toBe(gen);
  });

  it('supports 16 and 4096 bins', () => {
    for (const binCount of [16, 4096] as const) {
      const f = makeFixture({ options: { binCount } });
      expect(f.repo.currentFiles()).toHaveLength(binCount + 4);
      const t = target(7);
      expect(f.repo.addTarget(t.path, t.target)[0]!.role).toBe(binFor(t.path, binCount));
    }
  });

  it('reloads from persisted bytes, verifying them, and keeps publishing', () => {
    const f = makeFixture();
    f.repo.addTarget(target(1).path, target(1).target);
    const cur = new Map(f.repo.currentFiles().map((x) => [x.role, x.bytes]));
    const bins = new Map([...cur].filter(([r]) => r.startsWith('bin-')));
    const stored = {
      root: cur.get('root')!,
      timestamp: cur.get('timestamp')!,
      snapshot: cur.get('snapshot')!,
      targets: cur.get('targets')!,
      bins,
    };
    const online = {
      timestamp: f.keys.timestamp.signer,
      snapshot: f.keys.snapshot.signer,
      targets: f.keys.targets.signer,
    };
    const again = TufRepository.load(stored, online, { now: f.clock.now });
    expect(again.generation).toBe(2);
    expect(again.getTarget(target(1).path)?.length).toBe(target(1).target.length);
    expect(again.addTarget(target(2).path, target(2).target).at(-2)!.name).toBe('3.snapshot.json');
    // wrong signer, tampered bytes, missing bin
    expect(() => TufRepository.load(stored, { ...online, timestamp: generateKeyPair().signer })).toThrow(
      /timestamp signer/,
    );
    const tampered = new Map(bins);
    tampered.set(
      'bin-00',
      Buffer.from(Buffer.from(bins.get('bin-00')!).toString().replace('"version":1', '"version":9')),
    );
    expect(() => TufRepository.load({ ...stored, bins: tampered }, online)).toThrow(
      expect.objectContaining({ code: 'bad-signature' }),
    );
    const missing = new Map(bins);
    missing.delete('bin-7f');
    expect(() => TufRepository.load({ ...stored, bins: missing }, online)).toThrow(/bin-7f is missing/);
  });

  it('refresh() re-signs the timestamp alone, then snapshot, then bins as they near expiry', () => {
    const f = makeFixture();
    expect(f.repo.refresh()).toEqual([]);
    f.clock.advance(13 * HOUR);
    expect(f.repo.refresh().map((x) => x.name)).toEqual(['timestamp.json']);
    f.clock.advance(4 * DAY + HOUR);
    expect(f.repo.refresh().map((x) => x.name)).toEqual(['2.snapshot.json', 'timestamp.json']);
    f.clock.advance(60 * DAY + HOUR);
    const files = f.repo.refresh();
    expect(files.filter((x) => x.role.startsWith('bin-'))).toHaveLength(256);
    expect(files.some((x) => x.role === 'targets')).toBe(true);
  });

  it('rotates root only with a threshold of old AND new root keys', () => {
    const f = makeFixture();
    const next = generateKeyPair();
    const change = { root: { keys: [next.publicKey], threshold: 1 } };
    expect(() => f.repo.rotateRoot(change, [next.signer])).toThrow(
      /not signed by a threshold of the old root keys/,
    );
    expect(() => f.repo.rotateRoot(change, [f.keys.root[0]!.signer])).toThrow(
      /not signed by a threshold of the new root keys/,
    );
    expect(f.repo.rootVersion).toBe(1);
    const files = f.repo.rotateRoot(change, [f.keys.root[0]!.signer, next.signer]);
    expect(files.map((x) => x.name)).toEqual(['2.root.json', '2.snapshot.json', 'timestamp.json']);
    expect(json(files[0]!.bytes).signatures).toHaveLength(2);
    // a new online key needs its signer
    const ts = generateKeyPair();
    expect(() => f.repo.rotateRoot({ timestamp: ts.publicKey }, [next.signer])).toThrow(/timestamp signer/);
    const rotated = f.repo.rotateRoot({ timestamp: ts.publicKey }, [next.signer], { timestamp: ts.signer });
    expect(rotated.map((x) => x.name)).toEqual(['3.root.json', '3.snapshot.json', 'timestamp.json']);
  });

  it('carries the signed CA certificate field of root 1 into every rotated root', () => {
    const f = makeFixture({ rootFields: { [ROOT_CA_FIELD]: 'PEM' } });
    expect(json(f.root1).signed[ROOT_CA_FIELD]).toBe('PEM');
    const next = generateKeyPair();
    const [r2] = f.repo.rotateRoot({ root: { keys: [next.publicKey], threshold: 1 } }, [
      f.keys.root[0]!.signer,
      next.signer,
    ]);
    expect(json(r2!.bytes).signed[ROOT_CA_FIELD]).toBe('PEM');
    const ts = generateKeyPair();
    const [r3] = f.repo.rotateRoot({ timestamp: ts.publicKey }, [next.signer], { timestamp: ts.signer });
    expect(json(r3!.bytes).signed[ROOT_CA_FIELD]).toBe('PEM');
    expect(json(makeFixture().root1).signed[ROOT_CA_FIELD]).toBeUndefined();
  });

  it('rejects bad options naming the option and the value', () => {
    expect(() => makeFixture({ options: { binCount: 100 as never } })).toThrow(
      /binCount must be 16, 256 or 4096, got 100/,
    );
    expect(() => makeFixture({ options: { expiryMs: { timestamp: 10 } } })).toThrow(
      /expiryMs.timestamp must be/,
    );
    expect(() => makeFixture({ rootKeys: 2, threshold: 3 })).toThrow(
      /threshold must be an integer from 1 to 2/,
    );
  });
});
