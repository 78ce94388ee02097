import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest, manifestChunks } from '../../../src/content/manifest.js';
import { DepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { certificateInfo } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { decodeHeader, encodeHeader, encodePreamble, PREAMBLE_BYTES } from '../../../src/wire/bundle.js';
import { BundleFile } from '../../../depot/offline/bundle-file.js';
import { unlockForDepot } from '../../../depot/offline/import.js';
import { InboxWatcher, type InboxOutcome } from '../../../depot/offline/inbox.js';
import { depotLayout } from '../../../depot/layout.js';
import { approve, requestEnrollment } from '../../../master/db/machines.js';
import { runCli } from '../../helpers/cli.js';
import {
  bytesSeeded,
  copy,
  flipped,
  sectionOffset,
  servedComplete,
  startWorld,
  withDepot,
  type World,
} from './fixture.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const BLOCK = 64 * 1024;

async function refused(p: Promise<unknown>): Promise<DepotsyncError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a refusal').toBeInstanceOf(DepotsyncError);
  return e as DepotsyncError;
}

/** The package `name` as the depot serves it: its served manifest's chunks, read back (verified) from the store. */
async function servedBytes(dir: string, name: string): Promise<Buffer> {
  return withDepot(dir, async (d) => {
    for (const t of d.db.liveTargets(['served'])) {
      const m = decodeManifest(t.bytes);
      if (m.name !== name) continue;
      const parts: Buffer[] = [];
      for (const c of manifestChunks(m)) parts.push(await d.store.get(c.id, { verify: true }));
      return Buffer.concat(parts);
    }
    throw new Error(`${name} is not served`);
  });
}

/** Change one character of the header's JSON text, `skip` characters after `needle` (the sections stay byte for byte). */
function headerEdit(
  src: string,
  dst: string,
  needle: string,
  skip: number,
  to: (c: string) => string,
): string {
  const b = readFileSync(src);
  const at = b.indexOf(needle, PREAMBLE_BYTES) + needle.length + skip;
  expect(at).toBeGreaterThan(needle.length + skip);
  const c = String.fromCharCode(b[at]!);
  expect(to(c)).not.toBe(c);
  b[at] = to(c).charCodeAt(0);
  writeFileSync(dst, b);
  return dst;
}

/**
 * `master export --encrypt` seals every section of the bundle for the depot's
 * certificate key (AES-256-GCM blocks, the content key wrapped with RSA-OAEP-SHA256); the import
 * authenticates and decrypts each block before using it, then runs the usual checks.
 */
describe('encrypted offline bundles', () => {
  let w: World;
  let D: string;
  let other: string;
  let sealed: string;
  const v1 = bytesSeeded(1_500_000, 21);

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('setup', '1.0', v1);
    D = await w.newDepot('ship');
    other = await w.newDepot('other');
    sealed = (await w.exportFor('ship', { encrypt: true, sealBlockBytes: BLOCK })).file;
  }, 60_000);
  afterAll(async () => {
    await w?.close();
  });

  it('names the depot and certificate in a plaintext header, and holds none of the content in the clear', async () => {
    const f = await BundleFile.open(sealed);
    try {
      expect(f.header.signed.formatVersion).toBe(2);
      const serial = await withDepot(D, (d) => certificateInfo(d.creds.certPem).serial);
      expect(f.encryption).toMatchObject({
        algorithm: 'AES-256-GCM+RSA-OAEP-SHA256',
        certificateSerial: serial,
        blockBytes: BLOCK,
      });
      expect(f.header.signed.depot).toBe('ship');
    } finally {
      await f.close();
    }
    const raw = readFileSync(sealed);
    // No 32-byte piece of the installer, and no metadata or manifest text.
    for (let at = 0; at + 32 <= v1.length; at += 150_000)
      expect(raw.indexOf(v1.subarray(at, at + 32))).toBe(-1);
    expect(raw.indexOf('"_type":"timestamp"')).toBe(-1);
    expect(raw.indexOf('"_type":"root"')).toBe(-1);
    // Size: the plain bundle plus 16 bytes a block.
    const plain = await w.exportFor('ship');
    const sections = decodeHeader(raw.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + raw.readUInt32BE(12)), 'x')
      .signed.sections;
    const tags = sections.reduce((n, s) => n + Math.ceil(s.length / BLOCK) * 16, 0);
    expect(raw.length - plain.bytes).toBeGreaterThanOrEqual(tags);
    expect(raw.length - plain.bytes).toBeLessThan(tags + 2048); // + the encryption entry in the header
  });

  it('refuses the bundle at another depot, naming the depot and certificate it is for', async () => {
    const e = await refused(w.importInto(other, sealed));
    expect(e.code).toBe('forbidden');
    expect(e.message).toMatch(
      /is for depot ship \(encrypted for its certificate serial [0-9a-f]+\), this depot is other/,
    );
    // Same name, other certificate (a depot whose certificate changed since the export).
    const f = await BundleFile.open(sealed);
    try {
      const e2 = await withDepot(other, (d) => {
        try {
          unlockForDepot(f, { creds: d.creds, config: { ...d.config, name: 'ship' } });
        } catch (err) {
          return err as DepotsyncError;
        }
        return undefined;
      });
      expect(e2?.code).toBe('forbidden');
      expect(e2?.message).toMatch(
        /encrypted for depot ship's certificate serial [0-9a-f]+; this depot's certificate is serial [0-9a-f]+/,
      );
      expect(e2?.hint).toMatch(/--encrypt/);
    } finally {
      await f.close();
    }
    expect(await servedComplete(other)).toBeUndefined();
  });

  it('refuses a changed wrapped key, a changed header, a header re-signed by the master, and sections of another bundle', async () => {
    // One byte of the wrapped key: RSA-OAEP refuses it.
    const k = await refused(
      w.importInto(
        D,
        headerEdit(sealed, w.file('key.bundle'), '"wrappedKey":"', 100, (c) => (c === 'A' ? 'B' : 'A')),
      ),
    );
    expect(k.code).toBe('corrupt');
    expect(k.message).toMatch(/wrapped key does not unwrap with this machine's private key/);

    // One byte of the signed header (the generation it starts at): the signature fails.
    const h = await refused(
      w.importInto(
        D,
        headerEdit(sealed, w.file('hdr.bundle'), '"fromGeneration":', 0, () => '1'),
      ),
    );
    expect(h.code).toBe('bad-signature');

    // A header the master did sign, but not the one the sections were sealed under (window moved): every
    // block is bound to the header's SHA-256, so the first section read fails its authentication.
    const b = readFileSync(sealed);
    const len = b.readUInt32BE(12);
    const signed = structuredClone(
      decodeHeader(b.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + len), 'x').signed,
    );
    signed.validUntil = new Date(Date.parse(signed.validUntil) + 86_400_000).toISOString();
    const header = encodeHeader(signed, [w.master.signers.timestamp]);
    const resigned = w.file('resigned.bundle');
    writeFileSync(
      resigned,
      Buffer.concat([encodePreamble(header.length, 2), header, b.subarray(PREAMBLE_BYTES + len)]),
    );
    const r = await refused(w.importInto(D, resigned));
    expect(r.code).toBe('hash-mismatch');
    expect(r.message).toMatch(/fails its AES-256-GCM authentication/);

    // The sections of another export of the same generation (same table, another content key).
    const second = (await w.exportFor('ship', { encrypt: true, sealBlockBytes: BLOCK })).file;
    const b2 = readFileSync(second);
    const len2 = b2.readUInt32BE(12);
    const mixed = w.file('mixed.bundle');
    writeFileSync(
      mixed,
      Buffer.concat([b.subarray(0, PREAMBLE_BYTES + len), b2.subarray(PREAMBLE_BYTES + len2)]),
    );
    expect(b.length).toBe(b2.length);
    const m = await refused(w.importInto(D, mixed));
    expect(m.code).toBe('hash-mismatch');
    expect(m.message).toMatch(/fails its AES-256-GCM authentication/);

    expect(await servedComplete(D)).toBeUndefined();
  });

  it('a flipped byte in a chunk block stops the import before any byte of that block is stored; the good bundle then imports and serves the package', async () => {
    const c = await sectionOffset(sealed, 'chunks');
    const blocks = Math.ceil(c.length / (BLOCK + 16));
    expect(blocks).toBeGreaterThan(4);
    const damaged = Math.floor(blocks / 2);
    const bad = flipped(sealed, w.file('chunk.bundle'), c.at + damaged * (BLOCK + 16) + 1000);
    const e = await refused(w.importInto(D, bad, { storeBatchBytes: 64 * 1024 }));
    expect(e.code).toBe('hash-mismatch');
    expect(e.message).toMatch(/section chunks-0001: block \d+ fails its AES-256-GCM authentication/);
    expect(await servedComplete(D)).toBeUndefined();

    // Which records lie (even in part) in the damaged block: none of them is stored; those wholly before are.
    const f = await BundleFile.open(sealed);
    const spans: Array<{ id: string; from: number; to: number }> = [];
    try {
      await withDepot(D, (d) => f.unlock(d.creds.keyPem));
      let at = 0;
      for await (const rec of f.chunkRecords(f.sections('chunks')[0]!, () => false)) {
        spans.push({ id: rec.id, from: at, to: at + rec.recordBytes });
        at += rec.recordBytes;
      }
    } finally {
      await f.close();
    }
    const lo = damaged * BLOCK;
    const inBlock = spans.filter((s) => s.to > lo && s.from < lo + BLOCK).map((s) => s.id);
    const before = spans.filter((s) => s.to <= lo).map((s) => s.id);
    expect(inBlock.length).toBeGreaterThan(0);
    await withDepot(D, async (d) => {
      expect(await d.store.missing(inBlock)).toEqual(inBlock);
      expect(await d.store.missing(before)).toEqual([]);
    });

    const r = await w.importInto(D, sealed);
    expect(r).toMatchObject({ switched: true, generation: 2 });
    expect(r.chunksImported).toBe(spans.length - before.length);
    expect(await servedComplete(D)).toBe(2);
    expect(sha(await servedBytes(D, 'setup'))).toBe(sha(v1));
  });

  it('imports an encrypted bundle from the inbox', async () => {
    const dock = await w.newDepot('dock');
    const bundle = (await w.exportFor('dock', { encrypt: true })).file;
    const outcomes: InboxOutcome[] = [];
    let wake: () => void = () => undefined;
    const watcher = new InboxWatcher({
      inbox: depotLayout(dock).inbox,
      importFile: (p) => w.importInto(dock, p),
      log: silentLogger(),
      settleMs: 50,
      stalledMs: 1000,
      retryMs: 200,
      onOutcome: (o) => (outcomes.push(o), wake()),
    });
    await watcher.start();
    try {
      copy(bundle, join(depotLayout(dock).inbox, 'sealed.bundle'));
      const deadline = Date.now() + 20_000;
      while (!outcomes.length && Date.now() < deadline)
        await new Promise<void>((r) => ((wake = r), setTimeout(r, 250).unref()));
    } finally {
      await watcher.close();
    }
    expect(outcomes[0]).toMatchObject({ kind: 'imported', name: 'sealed.bundle' });
    expect(readdirSync(join(depotLayout(dock).inbox, 'done'))).toEqual(['sealed.bundle']);
    expect(await servedComplete(dock)).toBe(2);
    expect(sha(await servedBytes(dock, 'setup'))).toBe(sha(v1));
  });

  it('refuses --encrypt at export for a depot with no certificate on record (and a bad block size), writing nothing', async () => {
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'bare', role: 'depot' });
    await requestEnrollment(w.master.db, { name: 'bare', role: 'depot', csrPem });
    await approve(w.master.db, 'bare', { by: 'test' });
    const out = w.file('bare.bundle');
    const e = await refused(w.exportFor('bare', { encrypt: true, out }));
    expect(e.code).toBe('not-found');
    expect(e.message).toMatch(/depot bare has no certificate on record/);
    expect(existsSync(out)).toBe(false);
    expect((await refused(w.exportFor('ship', { encrypt: true, sealBlockBytes: 100, out }))).code).toBe(
      'usage',
    );
    expect(existsSync(out)).toBe(false);

    // The command line: exit 1, one line on stderr; and --encrypt --json for a depot that has one.
    const cli = runCli([
      'master',
      'export',
      '--dir',
      w.master.layout.dir,
      '--depot',
      'bare',
      '--out',
      out,
      '--encrypt',
    ]);
    expect(cli.status).toBe(1);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli.stderr).toMatch(/depot bare has no certificate on record/);
    expect(existsSync(out)).toBe(false);
    const ok = runCli([
      'master',
      'export',
      '--dir',
      w.master.layout.dir,
      '--depot',
      'ship',
      '--out',
      out,
      '--encrypt',
      '--json',
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({
      file: out,
      encryptedFor: await withDepot(D, (d) => certificateInfo(d.creds.certPem).serial),
    });
    expect(readFileSync(out).readUInt32BE(8)).toBe(2);
  });
});
