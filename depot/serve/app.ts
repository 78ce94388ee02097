import { Hono } from 'hono';
import type { Logger } from '../../src/log.js';
import { errorHandler } from '../../src/serve/http-errors.js';
import { mutualTls, type AuthorizeMachine } from '../../src/serve/mtls.js';
import { publicReadRoutes, readRoutes, type ChunkReader, type ReadApiOptions } from '../../src/serve/read-api.js';
import type { ServeEnv } from '../../src/serve/env.js';
import type { DepotDb } from '../db/depot-db.js';
import type { RevocationGate } from './revocation-gate.js';
import { depotReadSource } from './source.js';

export interface DepotAppDeps {
  db: DepotDb;
  store: ChunkReader;
  revocations: RevocationGate;
  logger: Logger;
  /** The depot's name, shown by /healthz. */
  name?: string;
  now?: () => Date;
  readOptions?: Partial<ReadApiOptions>;
}

/**
 * Who may read from this depot: a certificate that chains to the master's CA (checked by the TLS layer;
 * `peerIdentity` kind 'cert', in date), issued to an agent or a child depot, and not revoked by the
 * signed list the last sync brought. Blocks revoked machines at every depot, not only at the master.
 */
export function depotAuthorize(revocations: RevocationGate): AuthorizeMachine {
  return (peer) => {
    if (peer.role !== 'agent' && peer.role !== 'depot') {
      return { ok: false, status: 403, code: 'wrong-role', reason: `certificate of ${peer.commonName} is not an agent or depot certificate` };
    }
    if (revocations.isRevoked(peer.serial)) {
      return { ok: false, status: 403, code: 'revoked', reason: `certificate ${peer.serial} of ${peer.commonName} was revoked by the master` };
    }
    return { ok: true, machine: { name: peer.commonName, role: peer.role, serial: peer.serial } };
  };
}

/** The depot's HTTP app (hono factory: tests call `app.request()`; server.ts serves it over HTTPS). */
export function createDepotApp(deps: DepotAppDeps): Hono<ServeEnv> {
  const log = deps.logger.child({ component: 'depot.serve' });
  const source = depotReadSource(deps.db, deps.store);
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(log));
  app.notFound((c) => c.json({ error: { code: 'not-found', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  // Public: health, and root metadata (agents bootstrap from their pinned fingerprint).
  app.get('/healthz', (c) => {
    const served = deps.db.served();
    return c.json({ status: 'ok', role: 'depot', name: deps.name, generation: served?.generation ?? null });
  });
  app.route('/', publicReadRoutes(source));

  // Everything else: mutual TLS first.
  app.use('*', mutualTls({ authorize: depotAuthorize(deps.revocations), log, ...(deps.now ? { now: deps.now } : {}) }));
  app.route('/', readRoutes(source, log, deps.readOptions));
  return app;
}
