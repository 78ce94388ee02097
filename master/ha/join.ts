import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { isAbsolute, join, resolve } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { issueServerCertificate, loadCa } from '../../src/pki/ca.js';
import { loadMasterConfig, validateMasterConfig } from '../config.js';
import { masterLayout } from '../layout.js';

export interface JoinResult {
  dir: string;
  name: string;
  hosts: string[];
  sharedDir: string;
  copied: string[];
}

/**
 * `master join`: provision another master of the same catalog from an existing one (docs/operations.md,
 * "Several masters"): the online signing keys, the CA, the admin secrets (keys/, ca/, admin.json), and a
 * master.json naming the same database and shared folder; the new master gets its own name and a server
 * certificate for its own hosts from the CA. Root keys are copied only if they are on the source master.
 */
export async function joinMaster(
  dir: string,
  from: string,
  o: { name: string; hosts?: string[]; log: Logger },
): Promise<JoinResult> {
  const src = masterLayout(from);
  const dst = masterLayout(dir);
  if (!existsSync(src.config)) {
    throw new DepotsyncError(
      'not-found',
      `master join: ${src.dir} is not a master directory (no master.json)`,
    );
  }
  if (existsSync(dst.dir) && readdirSync(dst.dir).length > 0) {
    throw new DepotsyncError('already-exists', `master join: ${dst.dir} is not empty`, {
      hint: 'give a new or empty directory for the new master',
    });
  }
  const config = loadMasterConfig(src.config);
  if (config.database.url === '') {
    throw new DepotsyncError(
      'bad-input',
      `master join: ${src.dir} keeps its catalog in SQLite (master.db), which only one master can use`,
      { hint: `move it to PostgreSQL first: depotsync master migrate --dir ${from} --to postgres://…` },
    );
  }
  if (o.name === config.name) {
    throw new DepotsyncError('bad-input', `master join: the new master needs its own name, not ${o.name}`, {
      hint: 'the name identifies the signer-lease holder; give --name m2 (or any other unique name)',
    });
  }
  const hosts = o.hosts && o.hosts.length > 0 ? o.hosts : config.hosts;
  const raw = JSON.parse(readFileSync(src.config, 'utf8')) as Record<string, unknown>;
  const sharedDir = masterLayout(src.dir, config.sharedDir).sharedDir;
  const database = { ...(raw.database as Record<string, unknown>) };
  const passwordFile = config.database.passwordFile;
  if (passwordFile !== '') database.passwordFile = resolve(src.dir, passwordFile);
  const next = { ...raw, name: o.name, hosts, sharedDir, database };
  validateMasterConfig({ ...config, name: o.name, hosts, sharedDir });

  for (const d of [dst.dir, `${dst.dir}/tls`, dst.dropbox, dst.dropboxRejected, dst.backups])
    mkdirSync(d, { recursive: true, mode: 0o700 });
  const copied: string[] = [];
  // Keys (online signing keys, root keys if kept here, the TOTP key), the CA, admin settings.
  for (const part of ['keys', 'ca', 'admin.json']) {
    const p = join(src.dir, part);
    if (!existsSync(p)) continue;
    cpSync(p, join(dst.dir, part), { recursive: true, preserveTimestamps: true });
    copied.push(part);
  }
  // A password file inside the source folder goes along (kept relative); one elsewhere is named by path.
  if (passwordFile !== '' && !isAbsolute(passwordFile) && existsSync(resolve(src.dir, passwordFile))) {
    cpSync(resolve(src.dir, passwordFile), resolve(dst.dir, passwordFile));
    database.passwordFile = passwordFile;
    copied.push(passwordFile);
  }
  const ca = loadCa(readFileSync(src.caKey, 'utf8'), readFileSync(src.caCert, 'utf8'));
  const server = issueServerCertificate(ca, {
    commonName: o.name,
    dnsNames: hosts.filter((h) => !isIP(h)),
    ipAddresses: hosts.filter((h) => isIP(h)),
  });
  await writeFileAtomic(dst.serverKey, server.keyPem, { mode: 0o600 });
  await writeFileAtomic(dst.serverCert, server.certPem);
  await writeFileAtomic(dst.config, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
  o.log.info({ dir: dst.dir, from: src.dir, name: o.name }, 'master joined');
  return { dir: dst.dir, name: o.name, hosts, sharedDir, copied };
}
