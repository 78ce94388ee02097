import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';

/**
 * The plaintext inside an encrypted backup (container.ts): a sequence of entries, each
 * `u32 length | JSON {path, size, mode}` followed by `size` bytes of the file, and a final
 * `{end: true, files, bytes}` entry. Paths are relative to the master directory, with '/' separators.
 */
export interface EntryHeader {
  path: string;
  size: number;
  mode: number;
}
interface EndEntry {
  end: true;
  files: number;
  bytes: number;
}

export function entryHeader(e: EntryHeader | EndEntry): Buffer {
  const json = Buffer.from(JSON.stringify(e), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([len, json]);
}

export function endEntry(files: number, bytes: number): Buffer {
  return entryHeader({ end: true, files, bytes });
}

/** A relative path that stays inside the target folder, or a 'corrupt' error. */
function safePath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '' || p.includes('\0') || isAbsolute(p))
    throw new DepotsyncError('corrupt', `${what}: an entry has an invalid path`);
  const n = normalize(p.split('/').join(sep));
  if (n.startsWith('..') || n.split(sep).includes('..'))
    throw new DepotsyncError('corrupt', `${what}: entry ${p} points outside the master directory`);
  return n;
}

/**
 * Writes the entries of a decrypted stream into `root`, as the bytes arrive (nothing is held whole in
 * memory). `finish()` checks that the end entry came and agrees with what was written.
 */
export class ArchiveExtractor {
  private pending: Buffer = Buffer.alloc(0);
  private current: { fh: FileHandle; left: number } | undefined;
  private ended: EndEntry | undefined;
  private files = 0;
  private bytes = 0;
  readonly written: string[] = [];

  constructor(
    private readonly root: string,
    private readonly what: string,
  ) {}

  async push(data: Buffer): Promise<void> {
    let d = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    this.pending = Buffer.alloc(0);
    while (d.length > 0) {
      if (this.ended) throw new DepotsyncError('corrupt', `${this.what}: data after the end entry`);
      if (this.current) {
        const take = Math.min(this.current.left, d.length);
        await writeAll(this.current.fh, d.subarray(0, take));
        this.current.left -= take;
        this.bytes += take;
        d = d.subarray(take);
        if (this.current.left === 0) await this.closeCurrent();
        continue;
      }
      if (d.length < 4) break;
      const len = d.readUInt32BE(0);
      if (len > 64 * 1024) throw new DepotsyncError('corrupt', `${this.what}: an entry header is too long`);
      if (d.length < 4 + len) break;
      const h = JSON.parse(d.subarray(4, 4 + len).toString('utf8')) as Partial<EntryHeader & EndEntry>;
      d = d.subarray(4 + len);
      if (h.end === true) {
        this.ended = h as EndEntry;
        continue;
      }
      const rel = safePath(h.path, this.what);
      if (!Number.isSafeInteger(h.size) || (h.size as number) < 0)
        throw new DepotsyncError('corrupt', `${this.what}: entry ${rel} has an invalid size`);
      const full = join(this.root, rel);
      mkdirSync(dirname(full), { recursive: true, mode: 0o700 });
      const mode = typeof h.mode === 'number' ? h.mode & 0o777 : 0o600;
      const fh = await open(full, 'wx', mode);
      this.written.push(rel);
      this.current = { fh, left: h.size as number };
      this.files++;
      if (this.current.left === 0) await this.closeCurrent();
    }
    if (d.length) this.pending = Buffer.from(d);
  }

  async finish(): Promise<{ files: number; bytes: number }> {
    if (this.current || this.pending.length || !this.ended)
      throw new DepotsyncError('truncated', `${this.what}: the archive inside ends before its end entry`, {
        hint: 'use another copy of the backup',
      });
    if (this.ended.files !== this.files || this.ended.bytes !== this.bytes)
      throw new DepotsyncError(
        'corrupt',
        `${this.what}: the end entry counts ${this.ended.files} files / ${this.ended.bytes} bytes, the archive holds ${this.files} / ${this.bytes}`,
      );
    // Durable before the caller moves them into place: one fsync per file, several at a time (the
    // journal commits them together; one by one costs a commit each).
    const queue = [...this.written];
    const worker = async () => {
      for (let rel = queue.pop(); rel !== undefined; rel = queue.pop()) {
        const fh = await open(join(this.root, rel), 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    for (const d of new Set(this.written.map((rel) => dirname(join(this.root, rel))))) await fsyncDir(d);
    return { files: this.files, bytes: this.bytes };
  }

  /** Close an open file after a failure (the caller removes the partial folder). */
  async abort(): Promise<void> {
    await this.current?.fh.close().catch(() => undefined);
    this.current = undefined;
  }

  private async closeCurrent(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (!c) return;
    await c.fh.close();
  }
}

async function writeAll(fh: FileHandle, b: Buffer): Promise<void> {
  let off = 0;
  while (off < b.length) off += (await fh.write(b, off, b.length - off)).bytesWritten;
}
