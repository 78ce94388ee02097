import { existsSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import {
  generateKeyPair,
  keyPairFromPem,
  writePrivateKey,
  type KeyPair,
  type Signer,
} from '../src/tuf/keys.js';
import type { OnlineSigners } from '../src/tuf/repository.js';
import type { MasterLayout } from './layout.js';

export const TUF_ROLES = ['root', 'timestamp', 'snapshot', 'targets'] as const;
export type TufRole = (typeof TUF_ROLES)[number];

/**
 * Roles whose key `master keys rotate` can replace. `bins` is the key named in targets.json's delegations.
 */
export const KEY_ROLES = ['root', 'targets', 'snapshot', 'timestamp', 'bins'] as const;
export type KeyRole = (typeof KEY_ROLES)[number];
export type OnlineRole = Exclude<KeyRole, 'root'>;
export const ONLINE_ROLES: readonly OnlineRole[] = ['targets', 'snapshot', 'timestamp', 'bins'];

export function parseKeyRole(text: string, what: string): KeyRole {
  if ((KEY_ROLES as readonly string[]).includes(text)) return text as KeyRole;
  throw new DepotsyncError(
    'usage',
    `${what}: --role must be one of ${KEY_ROLES.join(', ')}, got ${JSON.stringify(text)}`,
  );
}

/** keys/{role}.pem for an online role; bins.pem exists only once the bins got a key of their own. */
export function onlineKeyPath(layout: MasterLayout, role: OnlineRole): string {
  return join(layout.keysDir, `${role}.pem`);
}

/** A key written before the metadata naming it is committed; renamed into place after (recoverKeyFiles). */
const nextPath = (path: string) => path.replace(/\.pem$/, '.next.pem');

const ROOT_KEY_FILE = /^root(-[0-9a-f]{8,64})?\.pem$/;

/** Root private key files in `dir`: root.pem (made by init) and root-{keyid}.pem (made by rotations). */
export function rootKeyFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => ROOT_KEY_FILE.test(f))
    .sort()
    .map((f) => join(dir, f));
}

export function rootKeyFileName(pair: Pick<KeyPair, 'keyid'>): string {
  return `root-${pair.keyid.slice(0, 16)}.pem`;
}

export function readKeyFile(path: string): KeyPair {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `private key ${path}`);
  }
  return keyPairFromPem(pem, `private key ${path}`);
}

/** The root keys found in `files` (key files or directories of them) whose keyid is in `allowed`. */
export function rootSignersFrom(paths: readonly string[], allowed: ReadonlySet<string>): KeyPair[] {
  const out = new Map<string, KeyPair>();
  for (const p of paths) {
    const files = existsSync(p) && statSync(p).isDirectory() ? rootKeyFiles(p) : [p];
    for (const f of files) {
      const pair = readKeyFile(f);
      if (allowed.has(pair.keyid)) out.set(pair.keyid, pair);
    }
  }
  return [...out.values()];
}

/**
 * Make the keys of a new master, each written with mode 0600: `rootKeys` root keys (into `rootDir`,
 * the master's keys folder unless the root is kept offline) and the online timestamp, snapshot and
 * targets keys (the targets key also signs the bins until `keys rotate --role bins`).
 */
export async function createRoleKeys(
  layout: MasterLayout,
  opts: { rootKeys?: number; rootDir?: string } = {},
): Promise<{ root: KeyPair[]; timestamp: KeyPair; snapshot: KeyPair; targets: KeyPair }> {
  const n = opts.rootKeys ?? 1;
  const rootDir = opts.rootDir ?? layout.keysDir;
  const root: KeyPair[] = [];
  for (let i = 0; i < n; i++) {
    const pair = generateKeyPair();
    // One root key on the master keeps the name it always had.
    const file = n === 1 && rootDir === layout.keysDir ? 'root.pem' : rootKeyFileName(pair);
    await writePrivateKey(join(rootDir, file), pair.privateKey);
    root.push(pair);
  }
  const online = {} as Record<'timestamp' | 'snapshot' | 'targets', KeyPair>;
  for (const role of ['timestamp', 'snapshot', 'targets'] as const) {
    online[role] = generateKeyPair();
    await writePrivateKey(onlineKeyPath(layout, role), online[role].privateKey);
  }
  return { root, ...online };
}

/** The online signers (timestamp, snapshot, targets; bins when it has a key of its own). */
export function loadOnlineSigners(layout: MasterLayout): OnlineSigners {
  const read = (role: OnlineRole) => readKeyFile(onlineKeyPath(layout, role)).signer;
  const bins = existsSync(onlineKeyPath(layout, 'bins')) ? { bins: read('bins') } : {};
  return { timestamp: read('timestamp'), snapshot: read('snapshot'), targets: read('targets'), ...bins };
}

/**
 * The online signers, read again whenever a key file changes: `master keys rotate` runs in another
 * process than `master serve`, which must sign with the new key from its next re-signing on.
 */
export class OnlineKeyring {
  private stamp = '';
  private signers: OnlineSigners | undefined;

  constructor(private readonly layout: MasterLayout) {}

  current(): OnlineSigners {
    const stamp = ONLINE_ROLES.map((r) => {
      try {
        const s = statSync(onlineKeyPath(this.layout, r));
        return `${s.ino}:${s.mtimeMs}:${s.size}`;
      } catch {
        return '-';
      }
    }).join('|');
    if (!this.signers || stamp !== this.stamp) {
      this.signers = loadOnlineSigners(this.layout);
      this.stamp = stamp;
    }
    return this.signers;
  }
}

/**
 * Write a new online key beside the current one; `commitOnlineKey` puts it in place
 * once its metadata is committed.
 */
export async function stageOnlineKey(layout: MasterLayout, role: OnlineRole, pair: KeyPair): Promise<void> {
  await writePrivateKey(nextPath(onlineKeyPath(layout, role)), pair.privateKey);
}

/**
 * The new key replaces the old one: the old private key is deleted (a stolen copy
 * must not be usable here again).
 */
export function commitOnlineKey(layout: MasterLayout, role: OnlineRole): void {
  const path = onlineKeyPath(layout, role);
  renameSync(nextPath(path), path);
}

export function dropStagedKey(layout: MasterLayout, role: OnlineRole): void {
  const p = nextPath(onlineKeyPath(layout, role));
  if (existsSync(p)) unlinkSync(p);
}

/**
 * After a crash between committing new metadata and renaming its key into place: a staged key that
 * the committed metadata names goes into place; one it does not name was never committed and goes.
 * `named(role)` gives the keyids the stored metadata names for the role.
 */
export async function recoverKeyFiles(
  layout: MasterLayout,
  named: (role: OnlineRole) => readonly string[] | Promise<readonly string[]>,
): Promise<OnlineRole[]> {
  const done: OnlineRole[] = [];
  for (const role of ONLINE_ROLES) {
    const staged = nextPath(onlineKeyPath(layout, role));
    if (!existsSync(staged)) continue;
    if ((await named(role)).includes(readKeyFile(staged).keyid)) {
      commitOnlineKey(layout, role);
      done.push(role);
    } else {
      unlinkSync(staged);
    }
  }
  return done;
}

export type { Signer };
