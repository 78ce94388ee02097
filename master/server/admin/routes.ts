import { Hono, type Context } from 'hono';
import { validatePackageName, validateVersion } from '../../../src/content/paths.js';
import { DepotsyncError } from '../../../src/errors.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { readBodyCapped } from '../../../src/serve/http-errors.js';
import { Fields } from '../../../src/wire/decode.js';
import type { MasterContext } from '../../context.js';
import { listAudit, recordAudit } from '../../db/audit.js';
import { currentGeneration, liveVersions } from '../../db/catalog.js';
import { listMachines, MACHINE_ROLES, MACHINE_STATES, type Machine, type MachineRole, type MachineState } from '../../db/machines.js';
import { createEnrollmentToken } from '../../db/tokens.js';
import { approveMachine, blockMachine, revokeMachine, type Actor } from '../../machines/actions.js';
import { publish } from '../../publish/publish.js';
import { unpublish } from '../../publish/unpublish.js';
import type { AddressOf } from '../client-address.js';
import { parseJson } from '../enroll.js';
import { operatorAuth, requireRole, type TokenGuard } from './auth.js';
import { spoolUpload } from './upload.js';

const SMALL_BODY_BYTES = 16 * 1024;

/**
 * The operator API under `/v1/admin/` (bearer token; roles viewer < publisher < admin), mirroring the
 * CLI: list machines and packages, approve / block / revoke, enrollment tokens, streaming publish
 * upload, unpublish. Every change goes into the audit log with the operator's name and address.
 */
export function adminRoutes(ctx: MasterContext, addressOf: AddressOf, guard?: TokenGuard): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  const log = ctx.log.child({ component: 'master.admin' });
  const who = (c: Context<ServeEnv>): Actor => ({ actor: c.get('operator').name, address: addressOf(c) });
  app.use('*', operatorAuth(ctx.db, guard));

  // --- viewer: reads
  app.get('/machines', (c) => {
    const role = c.req.query('role');
    const state = c.req.query('state');
    if (role !== undefined && !MACHINE_ROLES.includes(role as MachineRole)) throw new DepotsyncError('bad-input', `role must be one of ${MACHINE_ROLES.join(', ')}, got ${JSON.stringify(role)}`);
    if (state !== undefined && !MACHINE_STATES.includes(state as MachineState)) throw new DepotsyncError('bad-input', `state must be one of ${MACHINE_STATES.join(', ')}, got ${JSON.stringify(state)}`);
    const machines = listMachines(ctx.db, { ...(role ? { role: role as MachineRole } : {}), ...(state ? { state: state as MachineState } : {}) });
    return c.json({ machines: machines.map(machineView) });
  });
  app.get('/packages', (c) => {
    const name = c.req.query('name');
    return c.json({ generation: currentGeneration(ctx.db), packages: liveVersions(ctx.db, name ? { name } : {}) });
  });
  app.get('/audit', (c) => {
    const limit = c.req.query('limit');
    const before = c.req.query('before');
    return c.json(listAudit(ctx.db, { ...(limit ? { limit: Number(limit) } : {}), ...(before ? { before: Number(before) } : {}) }));
  });

  // --- admin: machines and tokens
  app.post('/machines/:name/approve', requireRole('admin'), (c) => c.json({ machine: machineView(approveMachine(ctx, c.req.param('name'), who(c))) }));
  app.post('/machines/:name/block', requireRole('admin'), async (c) => c.json({ machine: machineView(await blockMachine(ctx, c.req.param('name'), who(c))) }));
  app.post('/machines/:name/revoke', requireRole('admin'), async (c) => {
    const out = await revokeMachine(ctx, c.req.param('name'), who(c));
    return c.json({ machine: machineView(out.machine), revokedSerials: out.revokedSerials });
  });
  app.post('/tokens', requireRole('admin'), async (c) => {
    const f = Fields.of('token request', parseJson(await readBodyCapped(c, SMALL_BODY_BYTES, 'token request'), 'token request'));
    const role = f.oneOf('role', MACHINE_ROLES);
    const ttlMs = f.optionalInt('ttlMs', { min: 1 });
    f.done();
    const op = who(c);
    const { token, record } = createEnrollmentToken(ctx.db, { role, createdBy: op.actor, ...(ttlMs !== undefined ? { ttlMs } : {}) });
    recordAudit(ctx.db, { actor: op.actor, action: 'token.create', target: role, detail: { id: record.id, expiresAt: record.expiresAt }, ...(op.address ? { address: op.address } : {}) });
    return c.json({ token, role, id: record.id, expiresAt: record.expiresAt }, 201);
  });

  // --- publisher: publish and unpublish
  app.post('/publish', requireRole('publisher'), async (c) => {
    // Validate before taking the upload, so a bad name costs the caller nothing.
    const name = validatePackageName(c.req.query('name'));
    const version = validateVersion(c.req.query('version'));
    const filename = c.req.query('filename') ?? name;
    const op = who(c);
    const upload = await spoolUpload(c, { masterDir: ctx.layout.dir, filename, maxBytes: ctx.config.maxUploadBytes });
    try {
      log.info({ name, version, bytes: upload.bytes, operator: op.actor }, 'upload received; publishing');
      const r = await publish(ctx, { name, version, path: upload.path, actor: op.actor, ...(op.address ? { address: op.address } : {}) });
      return c.json(r, r.unchanged ? 200 : 201);
    } finally {
      await upload.cleanup();
    }
  });
  app.post('/unpublish', requireRole('publisher'), async (c) => {
    const f = Fields.of('unpublish request', parseJson(await readBodyCapped(c, SMALL_BODY_BYTES, 'unpublish request'), 'unpublish request'));
    const name = f.string('name', { max: 200 });
    const version = f.string('version', { max: 200 });
    f.done();
    const r = await unpublish(ctx, `${validatePackageName(name)}@${validateVersion(version)}`, who(c).actor);
    return c.json(r);
  });

  return app;
}

/** A machine for the operator: no CSR or certificate PEM (long, and the API lists many machines). */
function machineView(m: Machine): Omit<Machine, 'csrPem' | 'certPem'> {
  const { csrPem: _csr, certPem: _cert, ...rest } = m;
  return rest;
}
