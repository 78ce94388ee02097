import type { TLSSocket } from 'node:tls';
import { Hono } from 'hono';
import type { ServeEnv } from '../../src/serve/env.js';
import { readBodyCapped } from '../../src/serve/http-errors.js';
import { MAX_RENEW_BODY_BYTES, parseRenewRequest } from '../../src/wire/renew.js';
import type { MasterContext } from '../context.js';
import { renewalState, renewFromCsr } from '../machines/renew.js';
import { rateLimited } from './client-address.js';
import { RateLimiter } from './rate-limit.js';

export const RENEW_ROUTE_DEFAULTS = {
  /** Renewals one machine may make per minute (each signs a certificate with the CA key). */
  renewalsPerMachinePerMinute: 6,
};

/**
 * `GET /v1/renew` and `POST /v1/renew` (src/wire/renew.ts). Mounted AFTER the mutual-TLS gate: the
 * machine is the one its current certificate names (a blocked, revoked or expired certificate was
 * refused there with the reason), never a name from the body. The body is capped while it streams.
 */
export function renewRoutes(
  ctx: MasterContext,
  opts: { clockMs: () => number; perMinute?: number },
): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  const log = ctx.log.child({ component: 'master.renew' });
  const limiter = new RateLimiter({
    perMinute: opts.perMinute ?? RENEW_ROUTE_DEFAULTS.renewalsPerMachinePerMinute,
    clockMs: opts.clockMs,
  });

  app.get('/v1/renew', async (c) => c.json(await renewalState(ctx, c.get('machine'))));

  app.post(
    '/v1/renew',
    rateLimited(limiter, (c) => c.get('machine').name, 'certificate renewals'),
    async (c) => {
      const machine = c.get('machine');
      const what = `renewal request of ${machine.name}`;
      const req = parseRenewRequest(await readBodyCapped(c, MAX_RENEW_BODY_BYTES, what), what);
      const address = (c.env?.incoming?.socket as TLSSocket | undefined)?.remoteAddress;
      const reply = await renewFromCsr(ctx, machine, req.csr, address);
      log.info(
        {
          machine: machine.name,
          role: machine.role,
          serial: reply.serial,
          previous: machine.serial,
          notAfter: reply.notAfter,
          address,
        },
        'machine certificate renewed',
      );
      return c.json(reply);
    },
  );
  return app;
}
