import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { DepotsyncError } from '../../src/errors.js';

/**
 * The encrypted backup file (docs/operations.md, "Backup file format"):
 *
 *   "DSBACKUP" | u16 format version | u32 header length | header JSON | frames…
 *
 * The header is plaintext (magic, KDF and its parameters, salt, the master's identity, a key check) so a
 * restore can say "this is a backup of master X" and "wrong passphrase" before reading any data. Every
 * frame is AES-256-GCM over at most `frameBytes` of the plaintext stream, with the whole header as
 * additional data, a nonce made of the frame counter and a "last frame" flag (the STREAM construction):
 * reordered, altered, dropped or appended frames fail authentication, and a file cut after any frame
 * lacks the flagged last frame. The key is scrypt(passphrase, random salt), so it is unique per file and
 * counter nonces never repeat under one key.
 */
export const BACKUP_MAGIC = Buffer.from('DSBACKUP', 'latin1');
export const BACKUP_FORMAT_VERSION = 1;
const FRAME_BYTES = 1 << 20;
const TAG_BYTES = 16;
const MAX_HEADER_BYTES = 64 * 1024;
/** scrypt cost: 2^17 × 8 × 128 B = 128 MiB of memory per derivation (a guess costs as much). */
export const SCRYPT_DEFAULTS = { N: 2 ** 17, r: 8, p: 1 } as const;
/** A header asking for more than this is refused before any work (a crafted file must not exhaust memory). */
const SCRYPT_MAX_MEMORY = 1024 * 1024 * 1024;
export const MIN_PASSPHRASE_CHARS = 12;

export interface BackupIdentity {
  /** The master's root fingerprint (SHA-256 of 1.root.json), which every depot and agent pins. */
  fingerprint: string;
  masterName: string;
  createdAt: string;
  generation: number;
}

export interface BackupHeader extends BackupIdentity {
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  cipher: 'aes-256-gcm';
  frameBytes: number;
  /** HMAC-SHA256(key, "depotsync backup key check"): tells a wrong passphrase from damaged data. */
  keyCheck: string;
}

const KEY_CHECK_LABEL = 'depotsync backup key check';

function deriveKey(passphrase: string, kdf: BackupHeader['kdf']): Promise<Buffer> {
  const maxmem = 128 * kdf.N * kdf.r * 2;
  return new Promise((resolve, reject) =>
    scrypt(
      passphrase.normalize('NFC'),
      Buffer.from(kdf.salt, 'base64'),
      32,
      { N: kdf.N, r: kdf.r, p: kdf.p, maxmem },
      (err, key) => (err ? reject(err) : resolve(key)),
    ),
  );
}

function keyCheck(key: Buffer): Buffer {
  return createHmac('sha256', key).update(KEY_CHECK_LABEL).digest();
}

function nonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

/** Check the passphrase's length (a short one falls to guessing, scrypt or not). */
export function checkPassphrase(passphrase: string, source: string): string {
  if (passphrase.length < MIN_PASSPHRASE_CHARS) {
    throw new DepotsyncError(
      'bad-input',
      `backup passphrase from ${source} is ${passphrase.length} characters; at least ${MIN_PASSPHRASE_CHARS} are needed`,
      {
        hint: 'use a long random passphrase, e.g. `openssl rand -base64 24`, and keep a copy off the master host',
      },
    );
  }
  return passphrase;
}

/** Writes the header, then encrypts whatever is pushed, in frames, into `out`. */
export class BackupWriter {
  private buf: Buffer[] = [];
  private buffered = 0;
  private counter = 0;
  private written = 0;

  private constructor(
    private readonly out: FileHandle,
    private readonly key: Buffer,
    private readonly aad: Buffer,
    private readonly frameBytes: number,
  ) {}

  static async create(
    out: FileHandle,
    passphrase: string,
    identity: BackupIdentity,
    opts: { scrypt?: { N: number; r: number; p: number }; frameBytes?: number } = {},
  ): Promise<BackupWriter> {
    const params = opts.scrypt ?? SCRYPT_DEFAULTS;
    const kdf = { name: 'scrypt' as const, ...params, salt: randomBytes(32).toString('base64') };
    const key = await deriveKey(passphrase, kdf);
    const frameBytes = opts.frameBytes ?? FRAME_BYTES;
    const header: BackupHeader = {
      ...identity,
      kdf,
      cipher: 'aes-256-gcm',
      frameBytes,
      keyCheck: keyCheck(key).toString('base64'),
    };
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const prefix = Buffer.alloc(BACKUP_MAGIC.length + 6);
    BACKUP_MAGIC.copy(prefix);
    prefix.writeUInt16BE(BACKUP_FORMAT_VERSION, BACKUP_MAGIC.length);
    prefix.writeUInt32BE(json.length, BACKUP_MAGIC.length + 2);
    const aad = Buffer.concat([prefix, json]);
    const w = new BackupWriter(out, key, aad, frameBytes);
    await w.raw(aad);
    return w;
  }

  get bytesWritten(): number {
    return this.written;
  }

  async write(data: Buffer): Promise<void> {
    let d = data;
    while (d.length > 0) {
      const take = Math.min(d.length, this.frameBytes - this.buffered);
      this.buf.push(d.subarray(0, take));
      this.buffered += take;
      d = d.subarray(take);
      if (this.buffered === this.frameBytes) await this.frame(false);
    }
  }

  /** The last frame (possibly empty) carries the flag that says the stream is complete. */
  async finish(): Promise<void> {
    await this.frame(true);
  }

  private async frame(last: boolean): Promise<void> {
    const plain = Buffer.concat(this.buf, this.buffered);
    this.buf = [];
    this.buffered = 0;
    const c = createCipheriv('aes-256-gcm', this.key, nonce(this.counter++, last));
    c.setAAD(this.aad);
    const body = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(plain.length);
    await this.raw(Buffer.concat([len, body]));
  }

  private async raw(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.out.write(b, off, b.length - off);
      off += bytesWritten;
    }
    this.written += b.length;
  }
}

/** Read and check the plaintext header (no passphrase needed). */
export async function readBackupHeader(
  fh: FileHandle,
  what: string,
): Promise<{ header: BackupHeader; aad: Buffer }> {
  const prefix = Buffer.alloc(BACKUP_MAGIC.length + 6);
  const { bytesRead } = await fh.read(prefix, 0, prefix.length, 0);
  if (bytesRead < BACKUP_MAGIC.length || !prefix.subarray(0, BACKUP_MAGIC.length).equals(BACKUP_MAGIC)) {
    throw new DepotsyncError('bad-input', `${what} is not a depotsync master backup (no DSBACKUP header)`, {
      hint: 'give a file made by `depotsync master backup` (M/backups/master-*.dsbackup)',
    });
  }
  if (bytesRead < prefix.length)
    throw new DepotsyncError('truncated', `${what} is truncated inside its header`, {
      hint: 'use another copy of the backup',
    });
  const version = prefix.readUInt16BE(BACKUP_MAGIC.length);
  if (version !== BACKUP_FORMAT_VERSION) {
    throw new DepotsyncError(
      'conflict',
      `${what} has backup format version ${version}; this depotsync reads version ${BACKUP_FORMAT_VERSION}`,
      { hint: 'restore it with the depotsync release that made it, or a newer one' },
    );
  }
  const len = prefix.readUInt32BE(BACKUP_MAGIC.length + 2);
  if (len > MAX_HEADER_BYTES)
    throw new DepotsyncError('corrupt', `${what}: header of ${len} bytes is not a backup header`);
  const json = Buffer.alloc(len);
  const r = await fh.read(json, 0, len, prefix.length);
  if (r.bytesRead < len)
    throw new DepotsyncError('truncated', `${what} is truncated inside its header`, {
      hint: 'use another copy of the backup',
    });
  let header: BackupHeader;
  try {
    header = JSON.parse(json.toString('utf8')) as BackupHeader;
  } catch (e) {
    throw new DepotsyncError('corrupt', `${what}: the header is not valid JSON (the file was altered)`, {
      cause: e,
    });
  }
  const k = header.kdf;
  const ok =
    header.cipher === 'aes-256-gcm' &&
    typeof header.fingerprint === 'string' &&
    typeof header.keyCheck === 'string' &&
    Number.isSafeInteger(header.frameBytes) &&
    header.frameBytes > 0 &&
    header.frameBytes <= 64 * FRAME_BYTES &&
    k?.name === 'scrypt' &&
    [k.N, k.r, k.p].every((v) => Number.isSafeInteger(v) && v > 0) &&
    (k.N & (k.N - 1)) === 0 &&
    128 * k.N * k.r <= SCRYPT_MAX_MEMORY &&
    k.p <= 16 &&
    typeof k.salt === 'string';
  if (!ok)
    throw new DepotsyncError('corrupt', `${what}: the header has unknown or out-of-range parameters`, {
      hint: 'the file was altered or made by another tool; use another copy of the backup',
    });
  return { header, aad: Buffer.concat([prefix, json]) };
}

/**
 * Decrypt a backup frame by frame. Throws 'unauthorized' for a wrong passphrase (before any data),
 * 'corrupt' for altered bytes and 'truncated' for a file that ends before its last frame.
 */
export async function* readBackup(
  fh: FileHandle,
  passphrase: string,
  what: string,
): AsyncGenerator<Buffer, void, undefined> {
  const { header, aad } = await readBackupHeader(fh, what);
  const key = await deriveKey(passphrase, header.kdf);
  const check = Buffer.from(header.keyCheck, 'base64');
  const mine = keyCheck(key);
  if (check.length !== mine.length || !timingSafeEqual(check, mine)) {
    throw new DepotsyncError(
      'unauthorized',
      `${what}: wrong passphrase (backup of master ${header.masterName}, ${header.fingerprint.slice(0, 16)}…, made ${header.createdAt}), or its header was altered`,
      {
        hint: 'give the passphrase the backup was made with (--passphrase-file FILE or DEPOTSYNC_BACKUP_PASSPHRASE); nothing was written',
      },
    );
  }
  let pos = aad.length;
  const { size } = await fh.stat();
  const lenBuf = Buffer.alloc(4);
  const open = (body: Buffer, plainLen: number, counter: number, last: boolean): Buffer | undefined => {
    try {
      const d = createDecipheriv('aes-256-gcm', key, nonce(counter, last));
      d.setAAD(aad);
      d.setAuthTag(body.subarray(plainLen));
      return Buffer.concat([d.update(body.subarray(0, plainLen)), d.final()]);
    } catch {
      return undefined;
    }
  };
  for (let counter = 0; ; counter++) {
    const got = (await fh.read(lenBuf, 0, 4, pos)).bytesRead;
    if (got < 4) throw truncated(what, pos, counter);
    const plainLen = lenBuf.readUInt32BE(0);
    if (plainLen > header.frameBytes)
      throw new DepotsyncError(
        'corrupt',
        `${what}: frame ${counter} at byte ${pos} has an impossible length`,
        {
          hint: 'the file was altered; use another copy of the backup; nothing was written',
        },
      );
    const body = Buffer.alloc(plainLen + TAG_BYTES);
    const r = (await fh.read(body, 0, body.length, pos + 4)).bytesRead;
    if (r < body.length) throw truncated(what, pos, counter);
    const start = pos;
    pos += 4 + body.length;
    const last = pos === size;
    const plain = open(body, plainLen, counter, last);
    if (!plain) {
      // A sound frame that is not flagged last, at the end of the file: the rest was cut off.
      if (last && open(body, plainLen, counter, false)) throw truncated(what, pos, counter + 1);
      throw new DepotsyncError(
        'corrupt',
        `${what}: frame ${counter} (bytes ${start}–${pos}) fails authentication: the file was altered or damaged`,
        { hint: 'use another copy of the backup; nothing was written' },
      );
    }
    yield plain;
    if (last) return;
  }
}

function truncated(what: string, pos: number, frames: number): DepotsyncError {
  return new DepotsyncError(
    'truncated',
    `${what} is truncated: it ends at byte ${pos} after ${frames} frame(s), before its last frame`,
    { hint: 'the copy is incomplete; use another copy of the backup; nothing was written' },
  );
}
