import { existsSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { compress } from '../../../src/compress/zstd.js';
import { DELTA_KIND } from '../../../src/wire/chunk-delta.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepotsyncError, isDepotsyncError } from '../../../src/errors.js';
import { generateKeyPair } from '../../../src/tuf/keys.js';
import {
  decodeHeader,
  encodeHeader,
  encodePreamble,
  PREAMBLE_BYTES,
  type BundleSigned,
} from '../../../src/wire/bundle.js';
import { resign } from '../fixture.js';
import { encodeValidityWindow } from '../../../src/wire/validity-window.js';
import { currentWindow } from '../../../depot/offline/window.js';
import type { SyncStore } from '../../../depot/sync/chunks.js';
import {
  bytesSeeded,
  copy,
  edited,
  flipped,
  rewrite,
  sectionOffset,
  servedComplete,
  startWorld,
  withDepot,
  type World,
} from './fixture.js';

/** Rewrite only the header of a bundle (the sections stay byte for byte) and sign it with `signer`s. */
function reheader(w: World, src: string, dst: string, mutate: (s: BundleSigned) => void): string {
  const b = readFileSync(src);
  const h = b.readUInt32BE(12);
  const decoded = decodeHeader(b.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + h), 'test');
  const signed = structuredClone(decoded.signed);
  mutate(signed);
  const header = encodeHeader(signed, [w.master.signers.timestamp]);
  writeFileSync(dst, Buffer.concat([encodePreamble(header.length), header, b.subarray(PREAMBLE_BYTES + h)]));
  return dst;
}

async function refused(p: Promise<unknown>): Promise<DepotsyncError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected the import to be refused').toBeInstanceOf(DepotsyncError);
  return e as DepotsyncError;
}

/** The bytes with the last one flipped (inside the last delta record's middle). */
function flipLast(b: Uint8Array): Buffer {
  const out = Buffer.from(b);
  out[out.length - 1]! ^= 0xff;
  return out;
}

/**
 * The section with its last record replaced by a kind 4 record (the whole chunk as a zstd frame), which
 * exports never write into a chunk-deltas section.
 */
async function lastAsStoredFrame(b: Uint8Array, get: (id: string) => Promise<Uint8Array>): Promise<Buffer> {
  const buf = Buffer.from(b);
  let at = 4 + Math.ceil(buf.readUInt32BE(0) / 8);
  let last = at;
  while (at < buf.length) {
    last = at;
    const kind = buf[at + 32]!;
    if (kind === DELTA_KIND.delta) at += 53 + buf.readUInt32BE(at + 49);
    else if (kind === DELTA_KIND.zstd || kind === DELTA_KIND.whole) at += 37 + buf.readUInt32BE(at + 33);
    else at += 33;
  }
  const id = buf.subarray(last, last + 32).toString('hex');
  const frame = compress(await get(id), 3);
  const h = Buffer.alloc(37);
  buf.copy(h, 0, last, last + 32);
  h[32] = DELTA_KIND.stored;
  h.writeUInt32BE(frame.length, 33);
  return Buffer.concat([buf.subarray(0, last), h, frame]);
}

/** A chunk-deltas section claiming another pair count. */
function withPairCount(b: Uint8Array, n: number): Buffer {
  const out = Buffer.from(b);
  out.writeUInt32BE(n, 0);
  return out;
}

describe('offline bundles: export, import, refusals', () => {
  let w: World;
  let D: string;
  let full: string;
  let fullChunks: number;
  let delta: string;
  const v1 = bytesSeeded(3_000_000, 7);

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('setup', '1.0', v1);
    D = await w.newDepot('ship');
    const x = await w.exportFor('ship');
    full = x.file;
    fullChunks = x.chunks;
  });
  afterAll(async () => {
    await w?.close();
  });

  it('refuses every damaged or foreign full bundle before anything is served', async () => {
    // Truncated (copy interrupted).
    const cut = copy(full, w.file('cut.bundle'));
    truncateSync(cut, statSync(cut).size - 1000);
    expect((await refused(w.importInto(D, cut))).code).toBe('truncated');

    // One flipped byte in the table of contents (a digit of a section's sha256): the signature fails.
    const raw = readFileSync(full);
    const at = raw.indexOf('"sha256":"', PREAMBLE_BYTES) + 10;
    let digit = at;
    while (!/[0-8]/.test(String.fromCharCode(raw[digit]!))) digit++;
    expect((await refused(w.importInto(D, flipped(full, w.file('toc.bundle'), digit)))).code).toBe(
      'bad-signature',
    );

    // One flipped byte in a metadata file: its SHA-256 is in the signed table.
    const ts = await sectionOffset(full, 'metadata', 'timestamp.json');
    expect((await refused(w.importInto(D, flipped(full, w.file('meta.bundle'), ts.at + 40)))).code).toBe(
      'hash-mismatch',
    );

    // The header signed by a key the trusted root does not name.
    const stranger = generateKeyPair();
    const foreign = w.file('foreign.bundle');
    await rewrite(full, foreign, [stranger.signer], {}, (id) => w.master.store.get(id));
    expect((await refused(w.importInto(D, foreign))).code).toBe('unknown-key');

    // Metadata signed by an unknown key, inside a header the master did sign: the TUF client refuses it.
    const forgedTs = w.file('forged-ts.bundle');
    await rewrite(
      full,
      forgedTs,
      [w.master.signers.timestamp],
      {
        sections: (ss) =>
          ss.map((s) =>
            s.name === 'timestamp.json'
              ? { ...s, bytes: resign(s.bytes, [stranger], (signed) => (signed.version += 1)) }
              : s,
          ),
      },
      (id) => w.master.store.get(id),
    );
    expect((await refused(w.importInto(D, forgedTs))).code).toBe('unknown-key');

    // A validity window the master signed, but not the one of this bundle (spliced in, window end moved).
    const spliced = w.file('spliced.bundle');
    await rewrite(
      full,
      spliced,
      [w.master.signers.timestamp],
      {
        sections: (ss) =>
          ss.map((s) => {
            if (s.kind !== 'validity-window') return s;
            const doc = JSON.parse(Buffer.from(s.bytes).toString('utf8'));
            doc.signed.validUntil = new Date(
              Date.parse(doc.signed.validUntil) + 300 * 86_400_000,
            ).toISOString();
            return { ...s, bytes: encodeValidityWindow(doc.signed, [w.master.signers.timestamp]) };
          }),
      },
      (id) => w.master.store.get(id),
    );
    const sp = await refused(w.importInto(D, spliced));
    expect(sp.code).toBe('bad-metadata');
    expect(sp.message).toMatch(/validity window differs from the header in validUntil/);

    // A table of contents declaring far more bytes than the file holds.
    const huge = reheader(w, full, w.file('huge.bundle'), (s) => {
      s.sections[s.sections.length - 1]!.length += 1e12;
      s.sectionBytes += 1e12;
    });
    expect((await refused(w.importInto(D, huge))).code).toBe('truncated');

    // Section names used as paths.
    for (const name of ['../../etc/passwd', 'a/b.json', 'x..json']) {
      const bad = reheader(w, full, w.file('name.bundle'), (s) => {
        s.sections[0]!.name = name;
      });
      const e = await refused(w.importInto(D, bad));
      expect(e.code, e.message).toBe('bad-path');
    }

    // The window closed.
    const s = await withDepot(D, () => undefined);
    expect(s).toBeUndefined();
    const e = await refused(w.importInto(D, full, { now: () => new Date(Date.now() + 31 * 86_400_000) }));
    expect(e.code).toBe('expired');
    expect(e.message).toMatch(/validity window closed/);

    // For another depot.
    await w.newDepot('other');
    const forOther = (await w.exportFor('other')).file;
    const e2 = await refused(w.importInto(D, forOther));
    expect(e2.code).toBe('forbidden');
    expect(e2.message).toMatch(/is for depot other, this depot is ship/);

    // Nothing was served by any of these.
    expect(await servedComplete(D)).toBeUndefined();
  });

  it('a full disk or a flipped byte in a chunk stops the import; the re-run finishes from what is stored', async () => {
    let puts = 0;
    const diskFull = (store: SyncStore): SyncStore => ({
      missing: (ids) => store.missing(ids),
      putMany: async (chunks) => {
        if (++puts > 1) throw new DepotsyncError('disk-full', 'write pack: no space left on device (ENOSPC)');
        return store.putMany(chunks);
      },
    });
    const e2 = await refused(w.importInto(D, full, { wrapStore: diskFull, storeBatchBytes: 256 * 1024 }));
    expect(e2.code).toBe('disk-full');
    expect(await servedComplete(D)).toBeUndefined();

    const c = await sectionOffset(full, 'chunks');
    const bad = flipped(full, w.file('chunk.bundle'), c.at + c.length - 10);
    const e = await refused(w.importInto(D, bad, { storeBatchBytes: 256 * 1024 }));
    expect(e.code).toBe('hash-mismatch');
    expect(e.message).toMatch(/do not hash to its id/);
    expect(await servedComplete(D)).toBeUndefined();

    const r = await w.importInto(D, full);
    expect(r.switched).toBe(true);
    expect(r.generation).toBe(2);
    // Chunks verified before the damaged one and before the disk filled are kept: the re-run imports only the rest.
    expect(r.chunksImported).toBeGreaterThan(0);
    expect(r.chunksImported).toBeLessThan(fullChunks);
    expect(await servedComplete(D)).toBe(2);
    expect(r.validUntil).toBeTruthy();
    expect(existsSync(r.statusFile!)).toBe(true);
    await withDepot(D, (d) => expect(currentWindow(d.db)?.validUntil).toBe(r.validUntil));
  });

  it('imports a delta, refuses the old bundle as a rollback, and names the --from for a bundle from a newer base', async () => {
    const v2 = edited(v1, 10);
    await w.publish('setup', '1.1', v2);
    const d = await w.exportFor('ship', { from: 2 });
    delta = d.file;
    expect(d.fromGeneration).toBe(2);
    expect(d.toGeneration).toBe(3);
    expect(d.chunkBytes).toBeLessThan(v2.length / 2);

    // A bundle starting at generation 3, for a depot at 2.
    await w.publish('tools', '1.0', bytesSeeded(200_000, 9));
    const ahead = await w.exportFor('ship', { from: 3 });
    const e = await refused(w.importInto(D, ahead.file));
    expect(e.code).toBe('conflict');
    expect(e.hint).toMatch(/--from 2/);

    // The edited chunks travel as deltas against the chunks of generation 2 (chunk-deltas section).
    expect(d.deltaChunks).toBeGreaterThan(0);
    expect(d.bytes).toBeLessThan(d.chunkBytes + (d.deltaChunks * 65_536) / 4);

    // A compressed manifest that would inflate far beyond its signed length (a decompression bomb):
    // inflating stops at the signed length and the import is refused.
    const bomb = w.file('bomb.bundle');
    await rewrite(
      delta,
      bomb,
      [w.master.signers.timestamp],
      {
        sections: (ss) =>
          ss.map((s) =>
            s.kind === 'manifest'
              ? { ...s, bytes: deflateRawSync(Buffer.alloc(1024 * 1024)), encoding: 'deflate' as const }
              : s,
          ),
      },
      (id) => w.master.store.get(id),
    );
    // (First: once a manifest has arrived intact, a later import of the same generation keeps it.)
    const eb = await refused(w.importInto(D, bomb));
    expect(eb.code).toBe('hash-mismatch');
    expect(eb.message).toMatch(/do not inflate to at most the \d+ bytes the signed catalog says/);
    expect(await servedComplete(D)).toBe(2);

    // A forged delta record (signed header, valid table): the rebuilt chunk does not hash to its id, so
    // it is refused, the import names the chunk it lacks, and nothing is switched.
    const forged = w.file('forged-delta.bundle');
    await rewrite(
      delta,
      forged,
      [w.master.signers.timestamp],
      {
        sections: (ss) => ss.map((s) => (s.kind === 'chunk-deltas' ? { ...s, bytes: flipLast(s.bytes) } : s)),
      },
      (id) => w.master.store.get(id),
    );
    const ef = await refused(w.importInto(D, forged));
    expect(ef.code).toBe('not-found');
    expect(ef.message).toMatch(/does not carry 1 chunk\(s\) of the new generation/);
    expect(await servedComplete(D)).toBe(2);
    // A whole chunk as a zstd frame in the delta section (exports never write one there): refused.
    const framed = w.file('framed-delta.bundle');
    let original: Uint8Array | undefined;
    const keep = <S extends { kind: string; bytes: Uint8Array }>(ss: S[]): S[] => {
      original = ss.find((x) => x.kind === 'chunk-deltas')?.bytes;
      return ss;
    };
    await rewrite(delta, framed, [w.master.signers.timestamp], { sections: keep }, (id) =>
      w.master.store.get(id),
    );
    const replaced = await lastAsStoredFrame(original!, (id) => w.master.store.get(id));
    await rewrite(
      delta,
      framed,
      [w.master.signers.timestamp],
      { sections: (ss) => ss.map((x) => (x.kind === 'chunk-deltas' ? { ...x, bytes: replaced } : x)) },
      (id) => w.master.store.get(id),
    );
    const ew = await refused(w.importInto(D, framed));
    expect(ew.code).toBe('not-found');
    expect(ew.message).toMatch(/does not carry 1 chunk\(s\) of the new generation/);
    expect(await servedComplete(D)).toBe(2);
    // A delta section made for another base (its pair count differs from what this depot computes).
    const otherBase = w.file('other-base.bundle');
    await rewrite(
      delta,
      otherBase,
      [w.master.signers.timestamp],
      {
        sections: (ss) =>
          ss.map((s) => (s.kind === 'chunk-deltas' ? { ...s, bytes: withPairCount(s.bytes, 999) } : s)),
      },
      (id) => w.master.store.get(id),
    );
    const eo = await refused(w.importInto(D, otherBase));
    expect(eo.message).toMatch(/made for 999 chunk pairs, this depot pairs \d+ from its served generation/);
    expect(eo.hint).toMatch(/--from/);
    expect(await servedComplete(D)).toBe(2);

    const r = await w.importInto(D, delta);
    expect(r.generation).toBe(3);
    // The forged bundle's intact deltas were verified and kept: only the refused one is left.
    expect(r.chunksImported).toBe(d.chunks + 1);
    expect(await servedComplete(D)).toBe(3);

    const old = await refused(w.importInto(D, full));
    expect(old.code).toBe('version-rollback');
    expect(old.message).toMatch(/older than generation 3/);
    expect(await servedComplete(D)).toBe(3);

    // Importing the same bundle again changes nothing.
    const again = await w.importInto(D, delta);
    expect(again.switched).toBe(false);
    expect(again.chunksImported).toBe(0);

    // Now the bundle from generation 3 fits.
    expect((await w.importInto(D, ahead.file)).generation).toBe(4);
    expect(await servedComplete(D)).toBe(4);
  });

  it('refuses an enrollment reply made for another depot', async () => {
    const { initOfflineDepot } = await import('../../../depot/offline/enroll.js');
    const { approveRequestFile } = await import('../../../master/offline/approve-file.js');
    const { silentLogger } = await import('../../../src/log.js');
    const { join } = await import('node:path');
    const a = await initOfflineDepot({
      dir: w.file('depot-a'),
      fingerprint: w.fingerprint,
      rootFile: join(w.master.layout.dir, '1.root.json'),
      name: 'yard-a',
      log: silentLogger(),
    });
    await initOfflineDepot({
      dir: w.file('depot-b'),
      fingerprint: w.fingerprint,
      rootFile: join(w.master.layout.dir, '1.root.json'),
      name: 'yard-b',
      log: silentLogger(),
    });
    await approveRequestFile(w.master, { request: a.request, out: w.file('reply-a.bundle') });
    const e = await refused(w.importInto(w.file('depot-b'), w.file('reply-a.bundle')));
    expect(e.code).toBe('forbidden');
    expect(existsSync(`${w.file('depot-b')}/tls/depot-cert.pem`)).toBe(false);
    // The right depot accepts it.
    expect((await w.importInto(w.file('depot-a'), w.file('reply-a.bundle'))).kind).toBe('enrollment');
    expect(isDepotsyncError(e)).toBe(true);
  });
});
