import { randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  statfs,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { decodeManifest, type Manifest } from '../../src/content/manifest.js';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import { writevAll } from '../../src/fs/writev-all.js';
import { createBlake3, digestEquals, blake3 } from '../../src/hash/blake3.js';
import type { Logger } from '../../src/log.js';
import { hashedChunk, type ChunkInput } from '../../src/store/chunk-id.js';
import { checkWindowsPathLengths } from '../windows/paths.js';
import { planChunks } from './chunks.js';
import type { ChunkCache } from './file-cache.js';

/** The whole-file check reads the staged files back in blocks of this size. */
const VERIFY_BLOCK_BYTES = 4 * 1024 * 1024;

/**
 * Every this many bytes written to a staged file, a flush of it to disk starts in the background (one
 * at a time per file): the disk writes the package back while the rest downloads, so the flush before
 * the commit waits only for the last part (the role sync_file_range plays in C; Node has no binding).
 */
const WRITEBACK_BYTES = 64 * 1024 * 1024;

/** Where assembled bytes go. A test seam: a writer that fails like a full disk. */
export interface FileSink {
  /** Write `parts` back to back from `position` (one writev: contiguous chunks go down in one call). */
  write(parts: readonly Uint8Array[], position: number): Promise<void>;
  read(into: Buffer, length: number, position: number): Promise<number>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export type OpenSink = (path: string, sizeBytes: number) => Promise<FileSink>;

/** A new file (never an existing one: `wx`), readable only by us until it is committed. */
export const openFileSink: OpenSink = async (path) => {
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx+', 0o600);
  } catch (e) {
    throw fromSystemError(e, `staging file ${path}`);
  }
  return {
    async write(parts, position) {
      await writevAll(fh, parts, position);
    },
    async read(into, length, position) {
      return (await fh.read(into, 0, length, position)).bytesRead;
    },
    sync: () => fh.sync(),
    close: () => fh.close(),
  };
};

/** One verified chunk's bytes at one place of the package. */
export interface Placed {
  fileIndex: number;
  offset: number;
  data: Uint8Array;
}

/** Fill `into` from `position` (reads may come back short); fewer bytes only at the end of the file. */
async function readFully(
  read: (into: Buffer, length: number, position: number) => Promise<number>,
  into: Buffer,
  position: number,
): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const n = await read(into.subarray(got), into.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/**
 * Read a staged file back in blocks of `blockBytes` and check that it is exactly `f`'s chunks. The
 * next block is read while the chunks of the current one are hashed; a chunk across two blocks is
 * hashed in two parts (a chunk is never longer than a block: the chunker's maximum is 256 KiB).
 */
export async function checkFileChunks(
  read: (into: Buffer, length: number, position: number) => Promise<number>,
  f: Manifest['files'][number],
  blockBytes = VERIFY_BLOCK_BYTES,
): Promise<void> {
  const readBlock = (buf: Buffer, position: number) => readFully(read, buf, position);
  const longest = f.chunks.reduce((n, c) => Math.max(n, c.length), 1);
  const size = Math.max(blockBytes, longest);
  let [cur, spare] = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
  let curStart = 0;
  let curLen = await readBlock(cur, 0);
  let next = curLen === size ? readBlock(spare, size) : Promise.resolve(0);
  next.catch(() => undefined);
  /** Move to the next block (the spare buffer, read meanwhile); start reading the one after it. */
  const advance = async (): Promise<boolean> => {
    const n = await next;
    if (n === 0) return false;
    [cur, spare] = [spare, cur];
    curStart += size;
    curLen = n;
    next = n === size ? readBlock(spare, curStart + size) : Promise.resolve(0);
    next.catch(() => undefined);
    return true;
  };
  const mismatch = (offset: number, id: string) =>
    new DepotsyncError(
      'corrupt',
      `assembled file ${f.path}: bytes at offset ${offset} do not match chunk ${id}`,
      {
        hint: 'the disk returned other bytes than were written; check the disk, then fetch again',
      },
    );
  let offset = 0;
  for (const c of f.chunks) {
    if (offset >= curStart + curLen && !(curLen === size && (await advance()))) throw mismatch(offset, c.id);
    const from = offset - curStart;
    let digest: Buffer;
    if (from + c.length <= curLen) {
      digest = blake3(cur.subarray(from, from + c.length));
    } else {
      // Across the block boundary: the first part now, the rest from the next block.
      const h = createBlake3().update(cur.subarray(from, curLen));
      const rest = c.length - (curLen - from);
      if (curLen !== size || !(await advance()) || curLen < rest) throw mismatch(offset, c.id);
      digest = h.update(cur.subarray(0, rest)).digest();
    }
    if (!digestEquals(digest, Buffer.from(c.id, 'hex'))) throw mismatch(offset, c.id);
    offset += c.length;
  }
  // Nothing after the last chunk: not in this block, and no further block.
  const beyond = offset - curStart < curLen || (curLen === size && (await next) > 0);
  if (beyond) throw new DepotsyncError('corrupt', `assembled file ${f.path} is longer than ${f.size} bytes`);
}

/** Most buffers one writev takes (IOV_MAX on Linux is 1024). */
const MAX_IOV = 1024;

/** A package of one top-level file is delivered as a file at --out; any other as a folder. */
export function packageKind(m: Manifest): 'file' | 'folder' {
  return m.files.length === 1 && !(m.files[0] as { path: string }).path.includes('/') ? 'file' : 'folder';
}

/** Checks before any download: the output's folder exists (clear error instead of a late failure). */
export async function checkOutputParent(out: string): Promise<void> {
  const parent = dirname(resolve(out));
  const info = await stat(parent).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') {
      throw new DepotsyncError('not-found', `output folder ${parent} does not exist`, {
        hint: `create it first (mkdir -p ${parent}), or choose another --out`,
      });
    }
    throw fromSystemError(e, `output folder ${parent}`);
  });
  if (!info.isDirectory()) throw new DepotsyncError('bad-path', `output folder ${parent} is not a folder`);
}

export const STAGING_MARK = '.depotsync-staging-';

/** Beside the staged package in its folder: the fetching process's pid, and the manifest it stages. */
const OWNER_FILE = 'owner';
const MANIFEST_FILE = 'manifest.json';

/** Is process `pid` running (a signal 0 probe; EPERM means it runs under another user)? */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The staging folders left beside `out` by fetches that were killed (kill -9, power loss): their owner
 * process is gone, or, for a folder without an owner file, it has been untouched for `olderThanMs`. A
 * folder whose owner still runs (a fetch to the same output in another process) is left alone. With a
 * cache, the chunks already staged in a leftover are salvaged into it first (each re-hashed against
 * the leftover's manifest, so nothing the disk or another process changed gets in): the next fetch
 * downloads only what the killed one had not written. Returns how many folders were removed.
 */
export async function salvageStaging(
  out: string,
  cache: ChunkCache | undefined,
  olderThanMs: number,
  nowMs: number,
  log: Logger,
): Promise<number> {
  const target = resolve(out);
  const prefix = `.${basename(target)}${STAGING_MARK}`;
  let removed = 0;
  const names = await readdir(dirname(target)).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix) || !/^[0-9a-f]{12}$/.test(name.slice(prefix.length))) continue;
    const dir = join(dirname(target), name);
    const info = await lstat(dir).catch(() => undefined);
    if (!info?.isDirectory()) continue;
    const owner = Number((await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '')).trim());
    const abandoned =
      Number.isSafeInteger(owner) && owner > 0
        ? owner !== process.pid && !processAlive(owner)
        : nowMs - info.mtimeMs >= olderThanMs;
    if (!abandoned) continue;
    if (cache) {
      try {
        const n = await salvageLeftover(dir, cache);
        if (n > 0) log.info({ staging: dir, chunks: n }, 'chunks of a killed fetch kept in the cache');
      } catch (e) {
        log.warn(
          { staging: dir, err: (e as Error).message },
          'staging left by a killed fetch could not be salvaged; removing it',
        );
      }
    }
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    removed++;
  }
  return removed;
}

/** The verified chunks of one leftover staging folder into `cache`. */
async function salvageLeftover(dir: string, cache: ChunkCache): Promise<number> {
  const m = decodeManifest(await readFile(join(dir, MANIFEST_FILE)), { what: `manifest in ${dir}` });
  const { paths } = stagedPaths(dir, m);
  const files = await Promise.all(paths.map((p) => open(p, 'r').catch(() => undefined)));
  try {
    return await salvageChunks(m, cache, async (fileIndex, into, length, position) => {
      const fh = files[fileIndex];
      return fh ? (await fh.read(into, 0, length, position)).bytesRead : 0;
    });
  } finally {
    await Promise.all(files.map(async (fh) => fh?.close()));
  }
}

/** Bytes of salvaged chunks per cache commit. */
const SALVAGE_BATCH_BYTES = 32 * 1024 * 1024;

/**
 * Read each distinct chunk of `m` (or only those in `only`) at its first place in the staged files,
 * and put the ones whose bytes hash to their id into `cache`. Never trusts what it reads: a region
 * not yet written (a hole reads as zeros), half written or changed is simply not salvaged.
 */
async function salvageChunks(
  m: Manifest,
  cache: ChunkCache,
  read: (fileIndex: number, into: Buffer, length: number, position: number) => Promise<number>,
  only?: ReadonlySet<string>,
): Promise<number> {
  const wanted = planChunks(m).filter((n) => (only ? only.has(n.id) : true));
  const missing = new Set(cache.missing(wanted.map((n) => n.id)));
  let batch: ChunkInput[] = [];
  let batchBytes = 0;
  let saved = 0;
  const commit = async () => {
    if (batch.length) await cache.putMany(batch);
    saved += batch.length;
    batch = [];
    batchBytes = 0;
  };
  for (const need of wanted) {
    if (!missing.has(need.id)) continue;
    const place = need.places[0] as { fileIndex: number; offset: number };
    const data = Buffer.allocUnsafe(need.length);
    const got = await readFully(
      (into, length, position) => read(place.fileIndex, into, length, position),
      data,
      place.offset,
    );
    if (got !== need.length) continue;
    const chunk = hashedChunk(data);
    if (chunk.id !== need.id) continue;
    batch.push(chunk);
    batchBytes += data.length;
    if (batchBytes >= SALVAGE_BATCH_BYTES) await commit();
  }
  await commit();
  return saved;
}

/**
 * Where the package's files sit inside a staging folder: under `file` or `package/`, never
 * beside the owner and manifest files.
 */
function stagedPaths(dir: string, m: Manifest): { staged: string; paths: string[] } {
  const kind = packageKind(m);
  const staged = join(dir, kind === 'file' ? 'file' : 'package');
  return {
    staged,
    paths: kind === 'file' ? [staged] : m.files.map((f) => join(staged, ...f.path.split('/'))),
  };
}

/** Checks once the manifest is known: nothing in the way at --out, and room on the disk. */
export async function checkOutput(out: string, m: Manifest): Promise<void> {
  const path = resolve(out);
  const kind = packageKind(m);
  if (process.platform === 'win32') {
    const staging = join(dirname(path), `.${basename(path)}${STAGING_MARK}${'0'.repeat(12)}`);
    checkWindowsPathLengths(out, stagedPaths(staging, m).paths);
  }
  const existing = await lstat(path).catch((e: NodeJS.ErrnoException) =>
    e.code === 'ENOENT' ? undefined : Promise.reject(fromSystemError(e, `output ${path}`)),
  );
  if (existing && (kind === 'folder' || !existing.isFile())) {
    throw new DepotsyncError(
      'already-exists',
      `output ${path} already exists${existing.isDirectory() ? ' (a folder)' : ''}; ${m.name}@${m.version} is a ${kind} package`,
      {
        hint:
          kind === 'folder'
            ? 'remove it or choose another --out (a folder package is never merged into an existing folder)'
            : 'remove it or choose another --out',
      },
    );
  }
  const fs = await statfs(dirname(path)).catch(() => undefined);
  if (fs && fs.bavail * fs.bsize < m.totalBytes) {
    throw new DepotsyncError(
      'disk-full',
      `output ${path}: ${m.totalBytes} bytes needed, ${fs.bavail * fs.bsize} free on its disk`,
      {
        hint: 'free disk space or choose another --out; nothing was downloaded',
      },
    );
  }
}

/**
 * The staging folder `.<out>.depotsync-staging-<random>` beside the output (same folder, so same file
 * system: the final rename is atomic). Files are written at their offsets as verified chunks arrive,
 * re-read and re-hashed before commit, then moved into place in one rename.
 */
export class Staging {
  private readonly sinks: FileSink[] = [];
  private closed = false;
  /** Per file: bytes written since the last background flush started, and that flush. */
  private readonly unflushed: number[] = [];
  private readonly flushing: Array<Promise<void> | undefined> = [];

  private constructor(
    readonly dir: string,
    /** The staged package: the single file, or the folder holding the files. */
    readonly staged: string,
    readonly kind: 'file' | 'folder',
    private readonly paths: string[],
    /** The manifest being staged. */
    private readonly m: Manifest,
  ) {}

  /**
   * `manifestBytes` (the manifest's canonical bytes) and this process's pid are kept in the folder, so
   * if this process is killed the next fetch can tell the folder is abandoned and salvage its chunks.
   */
  static async create(
    out: string,
    m: Manifest,
    manifestBytes: Uint8Array,
    openSink: OpenSink,
  ): Promise<Staging> {
    const target = resolve(out);
    const dir = join(dirname(target), `.${basename(target)}${STAGING_MARK}${randomBytes(6).toString('hex')}`);
    const kind = packageKind(m);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (e) {
      throw fromSystemError(e, `staging folder ${dir}`);
    }
    const { staged, paths } = stagedPaths(dir, m);
    const staging = new Staging(dir, staged, kind, paths, m);
    try {
      await writeFile(join(dir, OWNER_FILE), `${process.pid}\n`, { flag: 'wx' }).catch((e: unknown) =>
        Promise.reject(fromSystemError(e, `staging folder ${dir}`)),
      );
      await writeFile(join(dir, MANIFEST_FILE), manifestBytes, { flag: 'wx' }).catch((e: unknown) =>
        Promise.reject(fromSystemError(e, `staging folder ${dir}`)),
      );
      for (const [i, f] of m.files.entries()) {
        const p = paths[i] as string;
        // Path traversal: the manifest's paths were checked when it was decoded; check the joined
        // result again so no file can land outside the staging folder whatever the check missed.
        if (!p.startsWith(dir + sep))
          throw new DepotsyncError(
            'bad-path',
            `manifest path ${JSON.stringify(f.path)} leaves the package folder`,
          );
        await mkdir(dirname(p), { recursive: true, mode: 0o755 }).catch((e: unknown) =>
          Promise.reject(fromSystemError(e, `staging folder ${dirname(p)}`)),
        );
        staging.sinks.push(await openSink(p, f.size));
      }
    } catch (e) {
      await staging.discard();
      throw e;
    }
    return staging;
  }

  /**
   * After a failed fetch: keep the chunks of `written` (verified, then written here by this fetch)
   * in the cache for the next attempt, each read back and re-hashed (a bad write is not kept). Errors
   * are the caller's to ignore: the cache only speeds up a retry.
   */
  async salvage(cache: ChunkCache, written: ReadonlySet<string>): Promise<number> {
    if (this.closed || written.size === 0) return 0;
    return salvageChunks(
      this.m,
      cache,
      (fileIndex, into, length, position) => (this.sinks[fileIndex] as FileSink).read(into, length, position),
      written,
    );
  }

  /**
   * Write verified chunks at their places. Chunks that follow each other in a file (a batch is a run of
   * the package in order) go down in one writev: a 1 GiB package is a few hundred calls, not 16,000.
   */
  async write(placed: readonly Placed[]): Promise<void> {
    const sorted = [...placed].sort((a, b) => a.fileIndex - b.fileIndex || a.offset - b.offset);
    const runs: Array<{ fileIndex: number; offset: number; parts: Uint8Array[]; end: number }> = [];
    for (const p of sorted) {
      const last = runs.at(-1);
      if (last && last.fileIndex === p.fileIndex && last.end === p.offset && last.parts.length < MAX_IOV) {
        last.parts.push(p.data);
        last.end += p.data.length;
      } else {
        runs.push({
          fileIndex: p.fileIndex,
          offset: p.offset,
          parts: [p.data],
          end: p.offset + p.data.length,
        });
      }
    }
    await Promise.all(runs.map((r) => this.writeRun(r.fileIndex, r.offset, r.parts, r.end - r.offset)));
  }

  private async writeRun(
    fileIndex: number,
    offset: number,
    parts: Uint8Array[],
    bytes: number,
  ): Promise<void> {
    const sink = this.sinks[fileIndex];
    if (!sink) throw new DepotsyncError('internal', `staging: no file ${fileIndex}`);
    try {
      await sink.write(parts, offset);
    } catch (e) {
      throw fromSystemError(e, `write ${this.paths[fileIndex]}`);
    }
    this.unflushed[fileIndex] = (this.unflushed[fileIndex] ?? 0) + bytes;
    if (this.unflushed[fileIndex] >= WRITEBACK_BYTES && !this.flushing[fileIndex]) {
      this.unflushed[fileIndex] = 0;
      // A failure here is not lost: the flush before the commit (verify) fails the same way.
      const p = sink
        .sync()
        .catch(() => undefined)
        .finally(() => (this.flushing[fileIndex] = undefined));
      this.flushing[fileIndex] = p;
    }
  }

  /**
   * Whole-file check: flush each file to disk, read it back and BLAKE3 every chunk again against the
   * manifest (catches a bad write, a short file, a disk that returns other bytes than it was given).
   */
  async verify(m: Manifest): Promise<void> {
    for (const [i, f] of m.files.entries()) {
      const sink = this.sinks[i] as FileSink;
      const path = this.paths[i];
      try {
        // The flush to disk runs while the file is read back and re-hashed; both
        // must succeed before the commit.
        await this.flushing[i];
        const synced = sink.sync();
        synced.catch(() => undefined);
        await checkFileChunks((into, length, position) => sink.read(into, length, position), f);
        await synced;
      } catch (e) {
        throw fromSystemError(e, `check ${path}`);
      }
    }
  }

  /** Set the manifest's modes, then move the staged file or folder to `out` in one rename. */
  async commit(out: string, m: Manifest): Promise<void> {
    const target = resolve(out);
    await this.closeSinks();
    try {
      for (const [i, f] of m.files.entries()) await chmod(this.paths[i] as string, f.mode);
      if (this.kind === 'folder') {
        await chmod(this.staged, 0o755);
        for (const d of new Set(this.paths.map((p) => dirname(p)))) await fsyncDir(d);
      }
      await fsyncDir(this.dir);
      await rename(this.staged, target);
      await fsyncDir(dirname(target));
    } catch (e) {
      throw fromSystemError(e, `move ${m.name}@${m.version} into ${target}`);
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Remove everything staged (on any failure). Never throws. */
  async discard(): Promise<void> {
    await this.closeSinks().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  private async closeSinks(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const results = await Promise.allSettled(this.sinks.map((s) => s.close()));
    const bad = results.find((r) => r.status === 'rejected');
    if (bad) throw fromSystemError(bad.reason, `close staging files in ${this.dir}`);
  }
}
