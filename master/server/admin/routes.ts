import { Hono, type Context } from 'hono';
import { validatePackageName, validateVersion } from '../../../src/content/paths.js';
import { DepotsyncError } from '../../../src/errors.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { readBodyCapped } from '../../../src/serve/http-errors.js';
import { packageDepots } from '../../admin/package-status.js';
import type { AdminService } from '../../admin/service.js';
import { endSession, listSessions } from '../../admin/sessions.js';
import { disableTotp, enableTotp } from '../../admin/totp.js';
import { MAX_ADMIN_BODY_BYTES, parseTokenRequest, parseUnpublishRequest } from '../../../src/wire/admin.js';
import type { MasterContext } from '../../context.js';
import { listAudit, recordAudit } from '../../db/audit.js';
import { currentGeneration, findVersion, liveVersions } from '../../db/catalog.js';
import {
  listMachines,
  MACHINE_ROLES,
  MACHINE_STATES,
  type Machine,
  type MachineRole,
  type MachineState,
} from '../../db/machines.js';
import { getOperator, listOperators } from '../../db/operators.js';
import { createEnrollmentToken } from '../../db/tokens.js';
import { approveMachine, blockMachine, revokeMachine, type Actor } from '../../machines/actions.js';
import { publish } from '../../publish/publish.js';
import { unpublish } from '../../publish/unpublish.js';
import type { AddressOf } from '../client-address.js';
import { operatorAuth, requireRole, type TokenGuard } from './auth.js';
import { spoolUpload } from './upload.js';

/**
 * The operator API under `/v1/admin/` (bearer token; roles viewer < publisher < admin), mirroring the
 * CLI: list machines and packages, approve / block / revoke, enrollment tokens, streaming publish
 * upload, unpublish; and the fleet's status (the model the dashboard shows), alerts, dashboard
 * sessions and operators' TOTP. Every change goes into the audit log with the operator's name and address.
 */
export function adminRoutes(
  ctx: MasterContext,
  admin: AdminService,
  addressOf: AddressOf,
  guard?: TokenGuard,
): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  const log = ctx.log.child({ component: 'master.admin' });
  const who = (c: Context<ServeEnv>): Actor => ({ actor: c.get('operator').name, address: addressOf(c) });
  app.use(
    '*',
    operatorAuth(ctx.db, { requireTotp: () => ctx.config.requireTotp, ...(guard ? { guard } : {}) }),
  );

  // --- viewer: reads
  app.get('/machines', async (c) => {
    const role = c.req.query('role');
    const state = c.req.query('state');
    if (role !== undefined && !MACHINE_ROLES.includes(role as MachineRole))
      throw new DepotsyncError(
        'bad-input',
        `role must be one of ${MACHINE_ROLES.join(', ')}, got ${JSON.stringify(role)}`,
      );
    if (state !== undefined && !MACHINE_STATES.includes(state as MachineState))
      throw new DepotsyncError(
        'bad-input',
        `state must be one of ${MACHINE_STATES.join(', ')}, got ${JSON.stringify(state)}`,
      );
    const machines = await listMachines(ctx.db, {
      ...(role ? { role: role as MachineRole } : {}),
      ...(state ? { state: state as MachineState } : {}),
    });
    return c.json({ machines: machines.map(machineView) });
  });
  app.get('/packages', async (c) => {
    const name = c.req.query('name');
    return c.json({
      generation: await currentGeneration(ctx.db),
      packages: await liveVersions(ctx.db, name ? { name } : {}),
    });
  });
  app.get('/audit', async (c) => {
    const limit = c.req.query('limit');
    const before = c.req.query('before');
    return c.json(
      await listAudit(ctx.db, {
        ...(limit ? { limit: Number(limit) } : {}),
        ...(before ? { before: Number(before) } : {}),
      }),
    );
  });

  // --- viewer: the fleet's status (master/admin/status-model.ts)
  app.get('/status', async (c) => {
    const packages = c.req.query('packages');
    if (packages !== undefined && packages !== 'none' && packages !== 'all') {
      throw new DepotsyncError(
        'bad-input',
        `packages must be "all" or "none", got ${JSON.stringify(packages)}`,
      );
    }
    const status = await admin.status({ packages: packages !== 'none' });
    const signer = admin.signer ? await admin.signer() : undefined;
    return c.json(signer ? { ...status, signer } : status);
  });
  app.get('/status/package', async (c) => {
    const name = c.req.query('name');
    const version = c.req.query('version');
    if (!name || !version) throw new DepotsyncError('bad-input', 'give ?name=PACKAGE&version=VERSION');
    const v = await findVersion(ctx.db, name, version);
    if (!v || v.removedGeneration !== undefined)
      throw new DepotsyncError('not-found', `${name}@${version} is not a live package version`);
    const status = await admin.status({ packages: false });
    return c.json({
      name,
      version,
      generation: v.addedGeneration,
      depots: packageDepots(status.depots, v.addedGeneration),
    });
  });
  app.get('/alerts', async (c) => {
    const s = await admin.status({ packages: false });
    return c.json({ generatedAt: s.generatedAt, alerts: s.alerts });
  });

  // --- admin: machines and tokens
  app.post('/machines/:name/approve', requireRole('admin'), async (c) =>
    c.json({ machine: machineView(await approveMachine(ctx, c.req.param('name'), who(c))) }),
  );
  app.post('/machines/:name/block', requireRole('admin'), async (c) =>
    c.json({ machine: machineView(await blockMachine(ctx, c.req.param('name'), who(c))) }),
  );
  app.post('/machines/:name/revoke', requireRole('admin'), async (c) => {
    const out = await revokeMachine(ctx, c.req.param('name'), who(c));
    return c.json({ machine: machineView(out.machine), revokedSerials: out.revokedSerials });
  });
  app.post('/tokens', requireRole('admin'), async (c) => {
    const { role, ttlMs } = parseTokenRequest(await readBodyCapped(c, MAX_ADMIN_BODY_BYTES, 'token request'));
    const op = who(c);
    const { token, record } = await createEnrollmentToken(ctx.db, {
      role,
      createdBy: op.actor,
      ...(ttlMs !== undefined ? { ttlMs } : {}),
    });
    await recordAudit(ctx.db, {
      actor: op.actor,
      action: 'token.create',
      target: role,
      detail: { id: record.id, expiresAt: record.expiresAt },
      ...(op.address ? { address: op.address } : {}),
    });
    return c.json({ token, role, id: record.id, expiresAt: record.expiresAt }, 201);
  });

  // --- admin: dashboard sessions and operators' second factor
  app.get('/sessions', requireRole('admin'), async (c) =>
    c.json({ sessions: await listSessions(ctx.db, admin.sessionTimes) }),
  );
  app.post('/sessions/:id/end', requireRole('admin'), async (c) => {
    const id = Number(c.req.param('id'));
    if (!Number.isSafeInteger(id) || id < 1)
      throw new DepotsyncError(
        'bad-input',
        `session id must be a positive integer, got ${JSON.stringify(c.req.param('id'))}`,
      );
    const op = who(c);
    if (!(await endSession(ctx.db, id, op.actor, 'ended by admin')))
      throw new DepotsyncError('not-found', `session ${id} is not active`);
    await recordAudit(ctx.db, {
      actor: op.actor,
      action: 'session.end',
      target: `session:${id}`,
      address: op.address,
    });
    return c.json({ ended: id });
  });
  app.get('/operators', requireRole('admin'), async (c) =>
    c.json({ operators: await listOperators(ctx.db) }),
  );
  // An admin enrolls anyone; an operator without TOTP may enroll their own (how `requireTotp` is met).
  // Not a reset: with a stolen token, replacing an existing secret would skip the second factor.
  app.post('/operators/:name/totp', async (c) => {
    const name = c.req.param('name');
    const caller = c.get('operator');
    const target = caller.role === 'admin' ? await getOperator(ctx.db, name) : undefined;
    if (caller.role !== 'admin') {
      const self = name === caller.name ? await getOperator(ctx.db, name) : undefined;
      if (!self || self.hasTotp) {
        const message = `operator ${caller.name} has role ${caller.role}; only an admin enrolls TOTP for others or replaces an existing one`;
        return c.json({ error: { code: 'forbidden', message } }, 403);
      }
    } else if (!target) throw new DepotsyncError('not-found', `operator ${name} does not exist`);
    const out = await enableTotp(ctx.db, name);
    const op = who(c);
    await recordAudit(ctx.db, {
      actor: op.actor,
      action: 'operator.totp.enable',
      target: name,
      address: op.address,
    });
    return c.json({ operator: name, ...out }, 201);
  });
  app.post('/operators/:name/totp/disable', requireRole('admin'), async (c) => {
    const name = c.req.param('name');
    await disableTotp(ctx.db, name);
    const op = who(c);
    await recordAudit(ctx.db, {
      actor: op.actor,
      action: 'operator.totp.disable',
      target: name,
      address: op.address,
    });
    return c.json({ operator: name, totp: false });
  });

  // --- publisher: publish and unpublish
  app.post('/publish', requireRole('publisher'), async (c) => {
    // Validate before taking the upload, so a bad name costs the caller nothing.
    const name = validatePackageName(c.req.query('name'));
    const version = validateVersion(c.req.query('version'));
    const filename = c.req.query('filename') ?? name;
    const op = who(c);
    const upload = await spoolUpload(c, {
      masterDir: ctx.layout.dir,
      filename,
      maxBytes: ctx.config.maxUploadBytes,
    });
    try {
      log.info({ name, version, bytes: upload.bytes, operator: op.actor }, 'upload received; publishing');
      const r = await publish(ctx, {
        name,
        version,
        path: upload.path,
        actor: op.actor,
        ...(op.address ? { address: op.address } : {}),
      });
      return c.json(r, r.unchanged ? 200 : 201);
    } finally {
      await upload.cleanup();
    }
  });
  app.post('/unpublish', requireRole('publisher'), async (c) => {
    const { name, version } = parseUnpublishRequest(
      await readBodyCapped(c, MAX_ADMIN_BODY_BYTES, 'unpublish request'),
    );
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
