import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { writeFileAtomicSync } from '../../src/fs/atomic-write.js';
import { transaction, type MasterDb } from '../db/database.js';

/**
 * TOTP secrets encrypted at rest (AES-256-GCM) with a key kept OUTSIDE the database, in
 * `M/keys/totp.key` (32 random bytes, mode 0600): threat: a copy of master.db (a backup, a stolen
 * disk image of the database alone, a SQL read) giving away every operator's second factor.
 * Stored value: `v1.` + base64(iv 12 | tag 16 | ciphertext), with the operator's name as additional
 * data, so a secret moved to another operator's row does not decrypt (swapping second factors).
 * A value without the prefix is a plaintext secret of an older master: encrypted when the master opens.
 */
const PREFIX = 'v1.';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** Key file of the master whose database is `dbFile`: `M/keys/totp.key` beside `M/master.db`. */
export function totpKeyPath(dbFile: string): string {
  return join(dirname(dbFile), 'keys', 'totp.key');
}

const keys = new Map<string, Buffer>();

/**
 * The key of this database (cached per database file), created on first need. A database in memory
 * (tests) lives no longer than the process, so its key does not either. Never creates a new key over
 * secrets encrypted with a lost one: that would only hide the loss.
 */
export async function totpKey(m: MasterDb): Promise<Buffer> {
  const file = m.file ?? '';
  const known = keys.get(file);
  if (known) return known;
  const path = file === '' ? undefined : totpKeyPath(file);
  const sealed = path !== undefined && !existsSync(path) && (await hasSealed(m));
  const key = path === undefined ? randomBytes(KEY_BYTES) : loadOrCreateKey(path, () => sealed);
  keys.set(file, key);
  return key;
}

export function loadOrCreateKey(path: string, sealedExist: () => boolean = () => false): Buffer {
  if (existsSync(path)) {
    let key: Buffer;
    try {
      key = readFileSync(path);
    } catch (e) {
      throw fromSystemError(e, `TOTP key file ${path}`);
    }
    if (key.length !== KEY_BYTES) {
      throw new DepotsyncError(
        'corrupt',
        `TOTP key file ${path} holds ${key.length} bytes, expected ${KEY_BYTES}`,
        {
          hint: 'restore the file from where the master keys are kept',
        },
      );
    }
    return key;
  }
  if (sealedExist()) {
    throw new DepotsyncError(
      'not-found',
      `TOTP key file ${path} is missing, but the database holds encrypted TOTP secrets`,
      {
        hint: 'restore the file from where the master keys are kept, or disable and re-enable TOTP for each operator',
      },
    );
  }
  const key = randomBytes(KEY_BYTES);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomicSync(path, key, { mode: 0o600 });
  chmodSync(path, 0o600); // the umask may have taken bits off, never added: this is belt and braces
  return key;
}

async function hasSealed(m: MasterDb): Promise<boolean> {
  return (
    (await m.sql.get(`SELECT 1 AS one FROM operators WHERE totp_secret LIKE '${PREFIX}%' LIMIT 1`)) !==
    undefined
  );
}

export function isSealed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

export function sealSecret(key: Buffer, operator: string, secret: string): string {
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(operator, 'utf8'));
  const ct = Buffer.concat([c.update(secret, 'utf8'), c.final()]);
  return PREFIX + Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64');
}

export function openSecret(key: Buffer, operator: string, stored: string): string {
  if (!isSealed(stored)) return stored;
  const raw = Buffer.from(stored.slice(PREFIX.length), 'base64');
  try {
    if (raw.length <= IV_BYTES + TAG_BYTES) throw new Error('too short');
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    d.setAAD(Buffer.from(operator, 'utf8'));
    d.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([d.update(raw.subarray(IV_BYTES + TAG_BYTES)), d.final()]).toString('utf8');
  } catch (e) {
    throw new DepotsyncError(
      'corrupt',
      `the TOTP secret of operator ${operator} does not decrypt with the master's TOTP key`,
      {
        hint: 'the key file M/keys/totp.key is not the one the secret was made with; restore it, or disable and re-enable TOTP for this operator',
        cause: e,
      },
    );
  }
}

/** Encrypt every plaintext secret left by an older master (one transaction); returns how many. */
export async function sealPlaintextSecrets(m: MasterDb): Promise<number> {
  const rows = await m.sql.all<{ name: string; secret: string }>(
    `SELECT name, totp_secret AS secret FROM operators WHERE totp_secret IS NOT NULL AND totp_secret NOT LIKE '${PREFIX}%'`,
  );
  if (rows.length === 0) return 0;
  const key = await totpKey(m);
  // Sealed before the transaction: it holds the writer lock, so only the updates run inside it.
  const sealed = rows.map((r) => ({ ...r, sealed: sealSecret(key, r.name, r.secret) }));
  await transaction(m, async () => {
    for (const r of sealed) {
      await m.sql.run('UPDATE operators SET totp_secret = ? WHERE name = ? AND totp_secret = ?', [
        r.sealed,
        r.name,
        r.secret,
      ]);
    }
  });
  return rows.length;
}
