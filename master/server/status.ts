import type { TLSSocket } from 'node:tls';
import { Hono } from 'hono';
import { DepotsyncError } from '../../src/errors.js';
import type { ServeEnv } from '../../src/serve/env.js';
import { readBodyCapped } from '../../src/serve/http-errors.js';
import { decodeStatusReport, MAX_STATUS_BODY_BYTES } from '../../src/wire/status.js';
import type { MasterDb } from '../db/database.js';
import { recordDepotStatus } from '../db/status.js';
import { rateLimited } from './client-address.js';
import type { RateLimiter } from './rate-limit.js';

/**
 * `POST /v1/status` (mutual TLS; DESIGN.md §4.5): a depot's report about itself. It is filed under the
 * machine the client CERTIFICATE names: a name inside the body is ignored, so one depot cannot speak
 * for another. Rate-limited per machine; the body is capped while it streams, before parsing.
 */
export function statusRoutes(db: MasterDb, limiter: RateLimiter): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  app.post('/v1/status', rateLimited(limiter, (c) => c.get('machine').name, 'status reports'), async (c) => {
    const machine = c.get('machine');
    if (machine.role !== 'depot') {
      throw new DepotsyncError('forbidden', `machine ${machine.name} is ${machine.role === 'agent' ? 'an agent' : machine.role}; only depots report status`);
    }
    const body = await readBodyCapped(c, MAX_STATUS_BODY_BYTES, `status report from ${machine.name}`);
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch {
      throw new DepotsyncError('bad-json', `status report from ${machine.name}: body is not valid JSON`);
    }
    const report = decodeStatusReport(raw);
    const address = (c.env?.incoming?.socket as TLSSocket | undefined)?.remoteAddress;
    const outcome = recordDepotStatus(db, machine.name, report, { raw, ...(address ? { address } : {}) });
    return c.json({ machine: machine.name, sequence: report.sequence, outcome });
  });
  return app;
}
