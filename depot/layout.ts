import { join, resolve } from 'node:path';

/**
 * Where everything of a depot lives inside its directory D. The machine key is mode 0600.
 *
 *   depot.json        settings (config.ts)
 *   depot.db          SQLite: trusted TUF metadata, metadata files by served name, manifests, the served
 *                     and the pending generation, the revocation list, sync runs (db/schema.ts)
 *   store/chunks-v1/  the content-addressed chunk store (src/store)
 *   tls/              machine key, machine certificate, the master's CA certificate
 *   enroll.json       an enrollment waiting for approval (request id), removed once approved
 *   inbox/ outbox/    offline bundles in, status files out (docs/architecture.md)
 *   deltas/           zstd chunk deltas received, kept to serve down the tiers (src/deltas/cache.ts)
 */
export interface DepotLayout {
  dir: string;
  config: string;
  database: string;
  storeDir: string;
  tlsDir: string;
  key: string;
  cert: string;
  caCert: string;
  enrollment: string;
  inbox: string;
  outbox: string;
  /** zstd chunk deltas received from upstream, served again to children and agents (src/deltas/cache.ts). */
  deltasDir: string;
}

export function depotLayout(dir: string): DepotLayout {
  const d = resolve(dir);
  return {
    dir: d,
    config: join(d, 'depot.json'),
    database: join(d, 'depot.db'),
    storeDir: join(d, 'store'),
    tlsDir: join(d, 'tls'),
    key: join(d, 'tls', 'depot-key.pem'),
    cert: join(d, 'tls', 'depot-cert.pem'),
    caCert: join(d, 'tls', 'ca-cert.pem'),
    enrollment: join(d, 'enroll.json'),
    inbox: join(d, 'inbox'),
    outbox: join(d, 'outbox'),
    deltasDir: join(d, 'deltas'),
  };
}
