import { join, resolve } from 'node:path';

/**
 * Where everything of a master lives inside its directory M. Private keys are mode 0600.
 * Root keys may live elsewhere (offline media): they are needed only to renew or
 * rotate the root (docs/keys.md).
 */
export interface MasterLayout {
  dir: string;
  /** Content every master of one catalog serves (master.json sharedDir); M itself for a single master. */
  sharedDir: string;
  config: string;
  database: string;
  keysDir: string;
  key(role: 'root' | 'timestamp' | 'snapshot' | 'targets'): string;
  caKey: string;
  caCert: string;
  serverKey: string;
  serverCert: string;
  storeDir: string;
  dropbox: string;
  dropboxRejected: string;
  backups: string;
}

export function masterLayout(dir: string, sharedDir?: string | null): MasterLayout {
  const d = resolve(dir);
  const shared = sharedDir ? resolve(d, sharedDir) : d;
  return {
    dir: d,
    sharedDir: shared,
    config: join(d, 'master.json'),
    database: join(d, 'master.db'),
    keysDir: join(d, 'keys'),
    key: (role) => join(d, 'keys', `${role}.pem`),
    caKey: join(d, 'ca', 'ca-key.pem'),
    caCert: join(d, 'ca', 'ca-cert.pem'),
    serverKey: join(d, 'tls', 'server-key.pem'),
    serverCert: join(d, 'tls', 'server-cert.pem'),
    storeDir: join(shared, 'store'),
    dropbox: join(d, 'dropbox'),
    dropboxRejected: join(d, 'dropbox-rejected'),
    backups: join(d, 'backups'),
  };
}
