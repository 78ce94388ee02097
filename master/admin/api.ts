import { Hono, type Context } from 'hono';
import { DepotsyncError } from '../../src/errors.js';
import type { ServeEnv } from '../../src/serve/env.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { findVersion } from '../db/catalog.js';
import { getOperator } from '../db/operators.js';
import type { AddressOf } from '../server/client-address.js';
import { operatorAuth, requireRole } from '../server/admin/auth.js';
import { packageDepots } from './package-status.js';
import type { AdminService } from './service.js';
import { endSession, listSessions } from './sessions.js';
import { disableTotp, enableTotp } from './totp.js';

/**
 * The admin issue's part of the operator API (bearer token, DESIGN.md §7), mounted at `/v1/admin`
 * before the other operator routes:
 *   GET  /status[?packages=none]          the fleet status model (every role)
 *   GET  /status/package?name=N&version=V which depots have one version, by category
 *   GET  /alerts                          active alerts
 *   GET  /sessions                        active dashboard sessions (admin)
 *   POST /sessions/:id/end                end one (admin)
 *   POST /operators/:name/totp            give an operator a TOTP secret; returns it once (admin)
 *   POST /operators/:name/totp/disable    remove it (admin)
 * Each route carries its own authentication, so the other `/v1/admin/*` routes are not checked twice.
 */
export function adminApiRoutes(ctx: MasterContext, admin: AdminService, addressOf: AddressOf): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  const auth = operatorAuth(ctx.db, { limiter: admin.addressLimiter, addressOf });
  const who = (c: Context<ServeEnv>) => ({ actor: c.get('operator').name, address: addressOf(c) });

  app.get('/status', auth, (c) => {
    const packages = c.req.query('packages');
    if (packages !== undefined && packages !== 'none' && packages !== 'all') {
      throw new DepotsyncError('bad-input', `packages must be "all" or "none", got ${JSON.stringify(packages)}`);
    }
    return c.json(admin.status({ packages: packages !== 'none' }));
  });
  app.get('/status/package', auth, (c) => {
    const name = c.req.query('name');
    const version = c.req.query('version');
    if (!name || !version) throw new DepotsyncError('bad-input', 'give ?name=PACKAGE&version=VERSION');
    const v = findVersion(ctx.db, name, version);
    if (!v || v.removedGeneration !== undefined) throw new DepotsyncError('not-found', `${name}@${version} is not a live package version`);
    const status = admin.status({ packages: false });
    return c.json({ name, version, generation: v.addedGeneration, depots: packageDepots(status.depots, v.addedGeneration) });
  });
  app.get('/alerts', auth, (c) => {
    const s = admin.status({ packages: false });
    return c.json({ generatedAt: s.generatedAt, alerts: s.alerts });
  });

  app.get('/sessions', auth, requireRole('admin'), (c) => c.json({ sessions: listSessions(ctx.db, admin.sessionTimes) }));
  app.post('/sessions/:id/end', auth, requireRole('admin'), (c) => {
    const id = Number(c.req.param('id'));
    if (!Number.isSafeInteger(id) || id < 1) throw new DepotsyncError('bad-input', `session id must be a positive integer, got ${JSON.stringify(c.req.param('id'))}`);
    const op = who(c);
    if (!endSession(ctx.db, id, op.actor, 'ended by admin')) throw new DepotsyncError('not-found', `session ${id} is not active`);
    recordAudit(ctx.db, { actor: op.actor, action: 'session.end', target: `session:${id}`, address: op.address });
    return c.json({ ended: id });
  });

  app.post('/operators/:name/totp', auth, requireRole('admin'), (c) => {
    const name = c.req.param('name');
    if (!getOperator(ctx.db, name)) throw new DepotsyncError('not-found', `operator ${name} does not exist`);
    const out = enableTotp(ctx.db, name);
    const op = who(c);
    recordAudit(ctx.db, { actor: op.actor, action: 'operator.totp.enable', target: name, address: op.address });
    return c.json({ operator: name, ...out }, 201);
  });
  app.post('/operators/:name/totp/disable', auth, requireRole('admin'), (c) => {
    const name = c.req.param('name');
    disableTotp(ctx.db, name);
    const op = who(c);
    recordAudit(ctx.db, { actor: op.actor, action: 'operator.totp.disable', target: name, address: op.address });
    return c.json({ operator: name, totp: false });
  });
  return app;
}
