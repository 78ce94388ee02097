import { createHash, randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import { writevAll } from '../../src/fs/writev-all.js';
import type { ChunkEncoding } from '../../src/store/chunk-store.js';
import type { Signer } from '../../src/tuf/keys.js';
import {
  headerAad,
  sealedLength,
  SectionSealer,
  type BundleEncryption,
} from '../../src/wire/bundle-crypto.js';
import {
  BUNDLE_FORMAT_VERSION_SEALED,
  CHUNK_RECORD_HEADER_BYTES,
  CHUNK_RECORD_HEADER_BYTES_V2,
  checkSectionName,
  encodeChunkRecordHeader,
  encodeChunkRecordHeaderV2,
  encodeHeader,
  encodePreamble,
  RecordHeaderHash,
  type BundleSection,
  type BundleSigned,
  type SectionKind,
} from '../../src/wire/bundle.js';

export interface ByteSection {
  kind: Exclude<SectionKind, 'chunks'>;
  name: string;
  /** As stored (compressed when `encoding` says so). */
  bytes: Uint8Array;
  encoding?: 'deflate';
}

export interface PlannedChunk {
  id: string;
  /** Plain length (the manifest's). */
  length: number;
  /**
   * How the store holds it, from its index: the chunk goes into the bundle as stored (a
   * `"records":2` section). Without it, plain records.
   */
  stored?: { encoding: ChunkEncoding; length: number };
}

/** The header of a chunk's record in its section's format. */
function recordHeader(c: PlannedChunk, v2: boolean): Buffer {
  return v2
    ? encodeChunkRecordHeaderV2(c.id, c.stored?.length ?? c.length, c.stored?.encoding ?? 'plain', c.length)
    : encodeChunkRecordHeader(c.id, c.length);
}

export const WRITER_DEFAULTS = {
  /** Chunk data per chunk section (the table stays small; resuming is per chunk anyway). */
  chunkSectionMaxBytes: 256 * 1024 * 1024,
  /** Chunks read from the store ahead of the one being written. */
  readAhead: 16,
  /** Bytes gathered before one write call. */
  writeBufferBytes: 4 * 1024 * 1024,
  /**
   * Every this many bytes written, a flush of the file to disk starts in the background (one at a
   * time): the disk writes the bundle back while the rest is produced, and the closing fsync waits
   * only for the last part (what sync_file_range does in C; Node has no binding for it).
   */
  writebackBytes: 64 * 1024 * 1024,
} as const;

/** A chunk as the writer receives it (ChunkStore.readMany's records). */
export interface ChunkRecordIn {
  id: string;
  /** Plain bytes, or the stored form (`encoding`) for chunks planned with `stored`. */
  data: Buffer | undefined;
  encoding?: ChunkEncoding;
  problem?: Error;
  release?: () => void;
}

export interface WriteBundleInput {
  out: string;
  /** Everything of the signed header but the table of contents. */
  head: Omit<BundleSigned, 'sections' | 'sectionBytes'>;
  byteSections: readonly ByteSection[];
  chunks: readonly PlannedChunk[];
  /** Chunk bytes by id (the master's store, verified on read). */
  readChunk?: (id: string) => Promise<Buffer>;
  /**
   * Chunks in the order asked (the store's readMany: back-to-back records read in runs into recycled
   * buffers, each verified). Preferred over `readChunk` when given. `release` on a record: its run's
   * buffer may be reused once that record and those before it are written.
   */
  readChunks?: (ids: readonly string[]) => AsyncIterable<ChunkRecordIn>;
  signers: readonly Signer[];
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  chunkSectionMaxBytes?: number;
  /** Seal every section (format version 2): the content key and its header entry (bundle-crypto.ts). */
  seal?: { key: Buffer; encryption: BundleEncryption };
}

/**
 * The table of contents, computed before any chunk is read: chunk sections commit to their record headers.
 */
export function layoutSections(
  byteSections: readonly ByteSection[],
  chunks: readonly PlannedChunk[],
  chunkSectionMaxBytes: number,
): { sections: BundleSection[]; groups: PlannedChunk[][] } {
  const sections: BundleSection[] = [];
  let at = 0;
  for (const s of byteSections) {
    checkSectionName(s.name, `bundle section ${s.kind}`);
    sections.push({
      kind: s.kind,
      name: s.name,
      offset: at,
      length: s.bytes.length,
      sha256: createHash('sha256').update(s.bytes).digest('hex'),
      ...(s.encoding ? { encoding: s.encoding } : {}),
    });
    at += s.bytes.length;
  }
  const groups: PlannedChunk[][] = [];
  let cur: PlannedChunk[] = [];
  let curBytes = 0;
  const close = () => {
    if (!cur.length) return;
    const v2 = cur.some((c) => c.stored !== undefined);
    const h = new RecordHeaderHash();
    for (const c of cur) h.update(recordHeader(c, v2));
    const length = curBytes + cur.length * (v2 ? CHUNK_RECORD_HEADER_BYTES_V2 : CHUNK_RECORD_HEADER_BYTES);
    sections.push({
      kind: 'chunks',
      name: `chunks-${String(groups.length + 1).padStart(4, '0')}`,
      offset: at,
      length,
      sha256: h.digest(),
      chunks: cur.length,
      ...(v2 ? { records: 2 as const } : {}),
    });
    at += length;
    groups.push(cur);
    cur = [];
    curBytes = 0;
  };
  for (const c of chunks) {
    const bytes = c.stored?.length ?? c.length;
    if (cur.length && curBytes + bytes > chunkSectionMaxBytes) close();
    cur.push(c);
    curBytes += bytes;
  }
  close();
  return { sections, groups };
}

/**
 * Write a bundle: temporary name beside `out`, every section streamed in table order (chunks read
 * ahead from the store, written in large pieces), fsync, rename, fsync of the folder. A failure removes
 * the temporary file: nothing partial is ever at `out`. Returns the file's size.
 */
export async function writeBundle(input: WriteBundleInput): Promise<number> {
  const { sections, groups } = layoutSections(
    input.byteSections,
    input.chunks,
    input.chunkSectionMaxBytes ?? WRITER_DEFAULTS.chunkSectionMaxBytes,
  );
  const sectionBytes = sections.reduce((n, s) => n + s.length, 0);
  const signed: BundleSigned = { ...input.head, sectionBytes, sections };
  if (input.seal) {
    signed.formatVersion = BUNDLE_FORMAT_VERSION_SEALED;
    signed.encryption = input.seal.encryption;
  }
  const header = encodeHeader(signed, input.signers);
  const blockBytes = input.seal?.encryption.blockBytes;
  const storedBytes = blockBytes
    ? sections.reduce((n, s) => n + sealedLength(s.length, blockBytes), 0)
    : sectionBytes;
  const total = 16 + header.length + storedBytes;
  // Sealed: every section's plaintext goes through the sealer, bound to this header (its SHA-256 is the AAD).
  const sealer = input.seal
    ? new SectionSealer(input.seal.key, headerAad(header), input.seal.encryption.blockBytes)
    : undefined;
  const tmp = join(dirname(input.out), `.${basename(input.out)}.${randomBytes(6).toString('hex')}.partial`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx', 0o644);
  } catch (e) {
    throw fromSystemError(e, `bundle ${input.out}`);
  }
  let done = 0;
  let writeback: Promise<void> | undefined;
  let sinceWriteback = 0;
  /** The write of the previous buffer-full: the next one is gathered (chunks read) while it runs. */
  let writing: Promise<void> | undefined;
  try {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    /** Buffers to give back once the pending bytes are written. */
    let releases: Array<() => void> = [];
    const write = async (bufs: Buffer[], n: number, written_: Array<() => void>) => {
      // writev: no copy into one large buffer (fresh memory costs a page fault per 4 KiB).
      await writevAll(fh!, bufs);
      for (const r of written_) r();
      done += n;
      sinceWriteback += n;
      if (sinceWriteback >= WRITER_DEFAULTS.writebackBytes && !writeback) {
        sinceWriteback = 0;
        // Its failure is not lost: the closing fsync fails the same way.
        writeback = fh!
          .datasync()
          .catch(() => undefined)
          .finally(() => (writeback = undefined));
      }
      input.onProgress?.(done, total);
    };
    /** Hand the gathered buffers to the file once the write before them is done (one in flight, in order). */
    const flush = async () => {
      await writing;
      if (!pendingBytes) return;
      const job = write(pending, pendingBytes, releases);
      pending = [];
      pendingBytes = 0;
      releases = [];
      writing = job;
      job.catch(() => undefined); // awaited by the next flush, or below
    };
    const put = async (b: Uint8Array) => {
      pending.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      pendingBytes += b.length;
      if (pendingBytes >= WRITER_DEFAULTS.writeBufferBytes || pending.length >= 512) await flush();
    };
    const sealed: Buffer[] = [];
    const putPlain = async (b: Uint8Array) => {
      if (!sealer) return put(b);
      sealer.update(b, sealed);
      for (const c of sealed) await put(c);
      sealed.length = 0;
    };
    let section = 0;
    const begin = () => sealer?.begin(section, sections[section]!.length);
    const end = () => {
      sealer?.end();
      section++;
    };
    await put(encodePreamble(header.length, signed.formatVersion));
    await put(header);
    for (const s of input.byteSections) {
      begin();
      await putPlain(s.bytes);
      end();
    }
    const all = groups.flat();
    if (all.length && !input.readChunk && !input.readChunks)
      throw new DepotsyncError('internal', 'bundle writer: chunks planned but no chunk reader');
    const records: AsyncIterator<ChunkRecordIn> = (
      input.readChunks ? input.readChunks(all.map((c) => c.id)) : readAhead(all, input.readChunk!)
    )[Symbol.asyncIterator]();
    for (const group of groups) {
      begin();
      const v2 = group.some((c) => c.stored !== undefined);
      for (const c of group) {
        const next = await records.next();
        const r = next.done ? undefined : next.value;
        if (!r || r.id !== c.id || !r.data) {
          throw new DepotsyncError(
            'corrupt',
            `chunk ${c.id}: the master store cannot deliver it${r?.problem ? ` (${r.problem.message})` : ''}`,
            { hint: 'run a scrub of the master store' },
          );
        }
        const want = c.stored ?? { encoding: 'plain', length: c.length };
        if (r.data.length !== want.length || (r.encoding ?? 'plain') !== want.encoding) {
          throw new DepotsyncError(
            'corrupt',
            `chunk ${c.id}: the store holds ${r.data.length} bytes (${r.encoding ?? 'plain'}), planned ${want.length} (${want.encoding})`,
            { hint: 'run a scrub of the master store, then export again' },
          );
        }
        await putPlain(recordHeader(c, v2));
        await putPlain(r.data);
        if (r.release) releases.push(r.release);
      }
      end();
    }
    await records.return?.(undefined);
    await flush();
    await writing;
    if (done !== total)
      throw new DepotsyncError('internal', `bundle writer: wrote ${done} bytes, planned ${total}`);
    await writeback;
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, input.out);
    await fsyncDir(dirname(input.out));
    return total;
  } catch (e) {
    await writing?.catch(() => undefined);
    await writeback;
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e instanceof DepotsyncError ? e : fromSystemError(e, `write bundle ${input.out}`);
  }
}

/** One chunk at a time through `readChunk`, `WRITER_DEFAULTS.readAhead` reads ahead. */
async function* readAhead(
  all: readonly PlannedChunk[],
  readChunk: (id: string) => Promise<Buffer>,
): AsyncGenerator<ChunkRecordIn> {
  const reads: Array<Promise<Buffer>> = [];
  let next = 0;
  for (const c of all) {
    while (next < all.length && reads.length < WRITER_DEFAULTS.readAhead) {
      const p = readChunk(all[next++]!.id);
      p.catch(() => undefined); // awaited in order below; avoid an unhandled rejection meanwhile
      reads.push(p);
    }
    try {
      yield { id: c.id, data: await reads.shift()! };
    } catch (e) {
      yield { id: c.id, data: undefined, problem: e as Error };
    }
  }
}
