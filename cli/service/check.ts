import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, type Stats } from 'node:fs';
import { join, relative } from 'node:path';
import { loadDepotConfig } from '../../depot/config.js';
import { depotLayout } from '../../depot/layout.js';
import { loadAdminSettings } from '../../master/admin/config.js';
import { loadMasterConfig } from '../../master/config.js';
import { masterLayout } from '../../master/layout.js';
import { loadListenerCertificate, readTrustedCa } from '../../src/net/listener-cert.js';
import type { ServiceRole } from './units.js';

/** One finding of `depotsync service check`. */
export interface CheckItem {
  check: string;
  ok: boolean;
  detail: string;
  hint?: string;
}

/** uid and gid of a user name, or undefined when there is no such user. */
export function lookupUser(user: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: 'pipe' }).trim());
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', stdio: 'pipe' }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

const mode = (s: Stats) => `0${(s.mode & 0o777).toString(8)}`;

/** The private files of a role's folder: keys, and the master's database (it holds TOTP secrets). */
function secretFiles(role: ServiceRole, dir: string): string[] {
  if (role === 'depot') return [depotLayout(dir).key];
  const l = masterLayout(dir);
  const keys = existsSync(l.keysDir)
    ? readdirSync(l.keysDir)
        .filter((f) => f.endsWith('.pem'))
        .map((f) => join(l.keysDir, f))
    : [];
  const db = [l.database, `${l.database}-wal`, `${l.database}-shm`];
  return [...keys, l.caKey, l.serverKey, ...db].filter((f) => existsSync(f));
}

/** Entries the service writes or reads, down to two levels (the chunk store's folders only at the top). */
function ownedEntries(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory() && e.name !== 'store') for (const f of readdirSync(p)) out.push(join(p, f));
  }
  return out;
}

/**
 * `depotsync service check`: is the folder ready to be served by `user` under the unit `service install`
 * writes? Ownership and modes of the folder, its files and its keys (0600, the user's), and a
 * configuration that validates (with the operator certificate it names). Nothing is changed.
 */
export function serviceCheck(role: ServiceRole, dir: string, user: string, now = new Date()): CheckItem[] {
  const items: CheckItem[] = [];
  const add = (check: string, ok: boolean, detail: string, hint?: string) =>
    items.push({ check, ok, detail, ...(hint && !ok ? { hint } : {}) });
  const account = lookupUser(user);
  add(
    'user',
    account !== undefined,
    account ? `${user} (uid ${account.uid})` : `no user ${user} on this system`,
    `create it with \`depotsync service install --role ${role} --dir ${dir}\` or useradd --system ${user}`,
  );
  let folder: Stats | undefined;
  try {
    folder = lstatSync(dir);
  } catch {
    // reported below
  }
  if (!folder || !folder.isDirectory()) {
    add('folder', false, `${dir} is not a folder`, `run \`depotsync ${role} init --dir ${dir}\` first`);
    return items;
  }
  if (account) {
    add(
      'folder owner',
      folder.uid === account.uid,
      `${dir} belongs to uid ${folder.uid}${folder.uid === account.uid ? ` (${user})` : `, not ${user}`}`,
      `chown -R ${user}:${user} ${dir}`,
    );
  }
  add(
    'folder mode',
    (folder.mode & 0o027) === 0,
    `${dir} has mode ${mode(folder)}`,
    `others must not read it and the group must not write it: chmod 0700 ${dir}`,
  );
  if (account) {
    const foreign = ownedEntries(dir).filter((p) => lstatSync(p).uid !== account.uid);
    add(
      'files owner',
      foreign.length === 0,
      foreign.length === 0
        ? `every file checked belongs to ${user}`
        : `${foreign.length} not owned by ${user}, e.g. ${relative(dir, foreign[0]!)}`,
      `the service cannot write them: chown -R ${user}:${user} ${dir}`,
    );
  }
  let extraKey: string | undefined;
  let configOk = false;
  try {
    if (role === 'master') {
      const config = loadMasterConfig(masterLayout(dir).config);
      loadAdminSettings(dir);
      if (config.tls.certFile) {
        const c = loadListenerCertificate(config.tls, now);
        extraKey = config.tls.keyFile;
        add('listener certificate', true, `${c.subject}, valid until ${c.notAfter.toISOString()}`);
      }
    } else {
      const l = depotLayout(dir);
      const config = loadDepotConfig(l.config);
      readTrustedCa(config.tls.caFile);
      if (config.tls.certFile) {
        const c = loadListenerCertificate(config.tls, now);
        extraKey = config.tls.keyFile;
        add('listener certificate', true, `${c.subject}, valid until ${c.notAfter.toISOString()}`);
      }
      if (!existsSync(l.cert))
        add(
          'enrollment',
          existsSync(l.enrollment),
          existsSync(l.enrollment) ? 'waiting for approval (depot serve finishes it)' : 'not enrolled',
          `run \`depotsync depot init --dir ${dir} ...\``,
        );
    }
    configOk = true;
  } catch (e) {
    const err = e as { message: string; hint?: string };
    add(
      'configuration',
      false,
      err.message,
      err.hint ?? 'fix the file; `service check` reads it as serve would',
    );
  }
  if (configOk) add('configuration', true, `${role === 'master' ? 'master.json' : 'depot.json'} validates`);
  for (const file of [...secretFiles(role, dir), ...(extraKey ? [extraKey] : [])]) {
    let s: Stats;
    try {
      s = lstatSync(file);
    } catch {
      add('private file', false, `${file}: cannot be read`);
      continue;
    }
    const problems: string[] = [];
    if ((s.mode & 0o077) !== 0) problems.push(`mode ${mode(s)}, not 0600`);
    if (account && s.uid !== account.uid) problems.push(`owned by uid ${s.uid}, not ${user}`);
    add(
      'private file',
      problems.length === 0,
      `${file}: ${problems.length > 0 ? problems.join(', ') : account ? `0600, ${user}'s` : '0600'}`,
      `chmod 0600 ${file} && chown ${user}:${user} ${file}`,
    );
  }
  return items;
}
