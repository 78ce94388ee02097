import { Hono, type Context } from 'hono';
import { transaction } from '../db/database.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { parseCsr } from '../../src/pki/csr.js';
import type { ServeEnv } from '../../src/serve/env.js';
import { readBodyCapped } from '../../src/serve/http-errors.js';
import {
  MAX_ENROLL_BODY_BYTES,
  parseEnrollRequest,
  type EnrollReply,
  type EnrollRequest,
} from '../../src/wire/enroll.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { byRequest, requestEnrollment, type Machine } from '../db/machines.js';
import { consumeEnrollmentToken } from '../db/tokens.js';
import { approveMachine, reservedServerNames } from '../machines/actions.js';
import type { AddressOf } from './client-address.js';

/**
 * `POST /v1/enroll` and `GET /v1/enroll/{request}` (src/wire/enroll.ts; docs/architecture.md). Public: the
 * caller has no certificate yet. The app rate-limits both per source address before they get here.
 *
 *  - a valid one-time token of the same role → approved at once, certificate in the reply (200);
 *  - no token → pending (202) with a poll id; an operator approves later;
 *  - unknown, used or expired token → 403; CSR whose signature does not verify → 400;
 *  - a name already enrolled → 409 (renewal goes over mutual TLS, never through a stranger's CSR).
 */
export function enrollRoutes(ctx: MasterContext, addressOf: AddressOf): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  const log = ctx.log.child({ component: 'master.enroll' });

  app.post('/v1/enroll', async (c) => {
    const req = parseEnrollRequest(await readBodyCapped(c, MAX_ENROLL_BODY_BYTES, 'enrollment request'));
    checkCsr(ctx, req);
    const address = addressOf(c);
    const { machine, request } = await transaction(ctx.db, async () => {
      const r = await requestEnrollment(ctx.db, {
        name: req.name,
        role: req.role,
        csrPem: req.csr,
        ...(req.url ? { url: req.url } : {}),
        ...(req.site ? { site: req.site } : {}),
        ...(req.parent ? { parent: req.parent } : {}),
      });
      await recordAudit(ctx.db, {
        actor: `machine:${req.name}`,
        action: 'machine.enroll',
        target: req.name,
        detail: { role: req.role, token: req.token !== undefined },
        address,
      });
      if (req.token === undefined) return r;
      // Token, approval and certificate in one transaction: a failed approval does not burn the token,
      // and a bad token leaves no pending record behind.
      const token = await consumeTokenOr403(ctx, req);
      return {
        machine: await approveMachine(ctx, req.name, { actor: `token:${token}`, address }),
        request: r.request,
      };
    });
    log.info(
      { machine: machine.name, role: machine.role, state: machine.state, address },
      'enrollment request',
    );
    return reply(c, ctx, machine, request);
  });

  app.get('/v1/enroll/:request', async (c) => {
    const request = c.req.param('request');
    const machine = await byRequest(ctx.db, request);
    if (!machine) {
      throw new DepotsyncError('not-found', 'enrollment request not found', {
        hint: 'enroll again: the request id is unknown or its machine record was removed',
      });
    }
    return reply(c, ctx, machine, request);
  });

  return app;
}

function reply(c: Context<ServeEnv>, ctx: MasterContext, machine: Machine, request: string): Response {
  switch (machine.state) {
    case 'approved': {
      if (!machine.certPem)
        throw new DepotsyncError('internal', `machine ${machine.name} is approved without a certificate`);
      const body: EnrollReply = {
        state: 'approved',
        request,
        name: machine.name,
        certificate: machine.certPem,
        caCertificate: ctx.ca.certPem,
      };
      return c.json(body, 200);
    }
    case 'pending': {
      const body: EnrollReply = {
        state: 'pending',
        request,
        name: machine.name,
        message: 'waiting for approval by the master operator (depotsync master approve)',
      };
      return c.json(body, 202);
    }
    case 'blocked':
    case 'revoked':
      throw new DepotsyncError(
        'forbidden',
        `enrollment of ${machine.name} was refused: the machine is ${machine.state}`,
        {
          hint: 'ask the master operator',
        },
      );
  }
}

/** Checks that need no database: proof of possession, name and role, and no claim on the master's names. */
function checkCsr(ctx: MasterContext, req: EnrollRequest): void {
  const csr = parseCsr(req.csr, { what: `CSR of ${req.name}` });
  if (csr.commonName !== req.name) {
    throw new DepotsyncError(
      'bad-certificate',
      `CSR of ${req.name}: its common name is ${JSON.stringify(csr.commonName)}`,
      {
        hint: 'make the request on the machine itself with its own name',
      },
    );
  }
  if (csr.role !== null && csr.role !== req.role) {
    throw new DepotsyncError(
      'bad-certificate',
      `CSR of ${req.name}: it asks for role ${csr.role}, but the enrollment is for ${req.role}`,
    );
  }
  if (req.role === 'depot') {
    // Blocks a depot from obtaining a server certificate for the master's own host name.
    const reserved = new Set(reservedServerNames(ctx.config.hosts).map((h) => h.toLowerCase()));
    const taken = [...csr.dnsNames, ...csr.ipAddresses].find((n) => reserved.has(n.toLowerCase()));
    if (taken !== undefined)
      throw new DepotsyncError(
        'bad-certificate',
        `CSR of ${req.name}: asks for the master's own server name ${taken}`,
      );
  }
}

async function consumeTokenOr403(ctx: MasterContext, req: EnrollRequest): Promise<number> {
  try {
    return (await consumeEnrollmentToken(ctx.db, req.token as string, { machine: req.name, role: req.role }))
      .id;
  } catch (e) {
    // An unknown or used token is a refusal of this request, not a missing login: 403 with the reason.
    if (isDepotsyncError(e, 'unauthorized'))
      throw new DepotsyncError('forbidden', e.message, e.hint ? { hint: e.hint } : {});
    throw e;
  }
}
