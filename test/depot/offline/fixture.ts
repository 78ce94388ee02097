import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../../src/content/manifest.js';
import { silentLogger } from '../../../src/log.js';
import type { Signer } from '../../../src/tuf/keys.js';
import { PREAMBLE_BYTES } from '../../../src/wire/bundle.js';
import { openDepot, type Depot } from '../../../depot/depot.js';
import { initOfflineDepot } from '../../../depot/offline/enroll.js';
import { importFile, type ImportOptions, type ImportResult } from '../../../depot/offline/import.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import { approveRequestFile } from '../../../master/offline/approve-file.js';
import { exportBundle, type ExportOptions, type ExportResult } from '../../../master/offline/export.js';
import { writeBundle, type ByteSection, type PlannedChunk } from '../../../master/offline/writer.js';
import { publish } from '../../../master/publish/publish.js';
import { BundleFile } from '../../../depot/offline/bundle-file.js';
import type { BundleSigned } from '../../../src/wire/bundle.js';

/** Deterministic incompressible bytes (xorshift). */
export function bytesSeeded(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

/** `count` scattered edits of 4 KiB. */
export function edited(data: Buffer, count: number): Buffer {
  const out = Buffer.from(data);
  const stride = Math.floor(data.length / (count + 1));
  for (let k = 1; k <= count; k++)
    for (let i = 0; i < 4096; i++) out[k * stride + i] = (out[k * stride + i]! ^ 0xa5) & 0xff;
  return out;
}

/** A real master (in this process) and helpers to make air-gapped depots and bundles for them. */
export interface World {
  dir: string;
  master: MasterContext;
  fingerprint: string;
  publish(name: string, version: string, data: Buffer): Promise<{ generation: number }>;
  exportFor(depot: string, opts?: Partial<ExportOptions>): Promise<ExportResult>;
  /** Init an air-gapped depot, approve its request at the master, import the reply. */
  newDepot(name: string): Promise<string>;
  importInto(depotDir: string, file: string, opts?: Partial<ImportOptions>): Promise<ImportResult>;
  file(name: string): string;
  close(): Promise<void>;
}

export async function startWorld(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'offline-test-'));
  const M = join(dir, 'master');
  const log = silentLogger();
  const init = await initMaster(M, { log });
  const master = await openMaster(M, log);
  let n = 0;
  const file = (name: string) => join(dir, name);
  return {
    dir,
    master,
    fingerprint: init.fingerprint,
    file,
    async publish(name, version, data) {
      const p = file(`pkg-${++n}.bin`);
      writeFileSync(p, data);
      const r = await publish(master, { name, version, path: p, actor: 'test' });
      rmSync(p);
      return { generation: r.generation };
    },
    exportFor(depot, opts = {}) {
      return exportBundle(master, { depot, out: file(`${depot}-${++n}.bundle`), ...opts });
    },
    async newDepot(name) {
      const D = file(`depot-${name}`);
      const r = await initOfflineDepot({
        dir: D,
        fingerprint: init.fingerprint,
        rootFile: join(M, '1.root.json'),
        name,
        hosts: ['127.0.0.1'],
        listen: '127.0.0.1:0',
        log,
      });
      const reply = file(`reply-${name}.bundle`);
      await approveRequestFile(master, { request: r.request, out: reply });
      const out = await importFile(D, reply, { logger: log });
      expect(out.kind).toBe('enrollment');
      return D;
    },
    importInto(depotDir, f, opts = {}) {
      return importFile(depotDir, f, { logger: log, ...opts });
    },
    async close() {
      await master.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function withDepot<T>(dir: string, fn: (d: Depot) => Promise<T> | T): Promise<T> {
  const d = openDepot(dir, { logger: silentLogger() });
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

/** The served generation (undefined: none yet), after checking every chunk of it is stored and verifies. */
export async function servedComplete(dir: string): Promise<number | undefined> {
  return withDepot(dir, async (d) => {
    const served = d.db.served();
    if (!served) return undefined;
    for (const t of d.db.liveTargets(['served']))
      for (const id of uniqueChunkIds(decodeManifest(t.bytes))) await d.store.get(id, { verify: true });
    return served.generation;
  });
}

/** A copy of a bundle with one byte flipped at `at` (absolute offset). */
export function flipped(src: string, dst: string, at: number): string {
  const b = readFileSync(src);
  b[at] = (b[at]! ^ 0x01) & 0xff;
  writeFileSync(dst, b);
  return dst;
}

export function copy(src: string, dst: string): string {
  mkdirSync(join(dst, '..'), { recursive: true });
  copyFileSync(src, dst);
  return dst;
}

/** Where a section starts in the file. */
export async function sectionOffset(
  path: string,
  kind: string,
  name?: string,
): Promise<{ at: number; length: number }> {
  const f = await BundleFile.open(path);
  try {
    const s = f.header.signed.sections.find(
      (x) => x.kind === kind && (name === undefined || x.name === name),
    );
    if (!s) throw new Error(`no section ${kind} ${name ?? ''}`);
    // Stored bytes: equal to the table's offset and length, except in an encrypted (sealed) bundle.
    const p = f.storedPlace(s);
    return { at: p.offset, length: p.length };
  } finally {
    await f.close();
  }
}

/** Read a bundle's header and byte sections, change them, and write a new bundle signed by `signers`. */
export async function rewrite(
  src: string,
  dst: string,
  signers: Signer[],
  change: { head?: (h: BundleSigned) => void; sections?: (s: ByteSection[]) => ByteSection[] },
  readChunk?: (id: string) => Promise<Buffer>,
): Promise<void> {
  const f = await BundleFile.open(src);
  try {
    const signed = structuredClone(f.header.signed);
    change.head?.(signed);
    let sections: ByteSection[] = [];
    for (const s of f.header.signed.sections)
      if (s.kind !== 'chunks')
        sections.push({
          kind: s.kind,
          name: s.name,
          bytes: await f.readSection(s),
          ...(s.encoding ? { encoding: s.encoding } : {}),
        });
    sections = change.sections ? change.sections(sections) : sections;
    const chunks: PlannedChunk[] = [];
    for (const s of f.sections('chunks'))
      for await (const r of f.chunkRecords(s, () => true)) chunks.push({ id: r.id, length: r.data!.length });
    const { sections: _t, sectionBytes: _b, ...head } = signed;
    await writeBundle({
      out: dst,
      head,
      byteSections: sections,
      chunks,
      signers,
      ...(readChunk ? { readChunk } : {}),
    });
  } finally {
    await f.close();
  }
}

export { PREAMBLE_BYTES };
