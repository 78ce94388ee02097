import type { TLSSocket } from 'node:tls';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../../src/log.js';
import type { AuthorizeMachine } from '../../src/serve/mtls.js';
import type { ServeEnv } from '../../src/serve/env.js';
import type { MasterDb } from '../db/database.js';
import { byName, bySerial, touch } from '../db/machines.js';
import type { Adopt } from '../backup/adopt.js';

/**
 * The master's decision on a client certificate that chains to its CA and is in date (the TLS layer and
 * `peerIdentity` checked that much). The machine table decides, by certificate SERIAL, on every request:
 *   - serial unknown → 401: a certificate the master has no record of (a restored database, a forged
 *     enrollment) speaks for no one;
 *   - the machine is pending, blocked or revoked → 403 naming the state (blocks a machine an operator
 *     refused, even while its keep-alive connection stays open);
 *   - the certificate itself is revoked, or is an older certificate of the machine past its end → 403.
 * A restored master first offers an unknown serial to `adopt` (master/backup/adopt.ts): certificates the
 * lost master issued after the backup are recorded, then decided like any other.
 * The identity handed on is the machine record's name and role, never a name taken from a request.
 */
export function masterAuthorize(db: MasterDb, now: () => Date, adopt?: Adopt): AuthorizeMachine {
  return async (peer, socket) => {
    let found = await bySerial(db, peer.serial);
    if (!found && adopt && (await adopt(peer, socket))) found = await bySerial(db, peer.serial);
    if (!found || !found.machine) {
      // A CA-issued certificate for a machine still waiting for approval (offline or restored records).
      const named = await byName(db, peer.commonName);
      if (named && named.state === 'pending') {
        return {
          ok: false,
          status: 403,
          code: 'pending',
          reason: `machine ${named.name} is still pending approval by the master operator`,
        };
      }
      return {
        ok: false,
        status: 401,
        code: 'unknown-certificate',
        reason: `certificate ${peer.serial} (${peer.commonName}) is not known to this master; enroll the machine`,
      };
    }
    const { certificate, machine } = found;
    if (machine.state === 'pending') {
      return {
        ok: false,
        status: 403,
        code: 'pending',
        reason: `machine ${machine.name} is still pending approval by the master operator`,
      };
    }
    if (machine.state === 'blocked') {
      return {
        ok: false,
        status: 403,
        code: 'blocked',
        reason: `machine ${machine.name} is blocked by the master operator`,
      };
    }
    if (machine.state === 'revoked' || certificate.revokedAt !== undefined) {
      return {
        ok: false,
        status: 403,
        code: 'revoked',
        reason: `certificate ${certificate.serial} of machine ${machine.name} is revoked`,
      };
    }
    if (Date.parse(certificate.notAfter) <= now().getTime()) {
      return {
        ok: false,
        status: 403,
        code: 'expired',
        reason: `certificate ${certificate.serial} of machine ${machine.name} expired at ${certificate.notAfter}; renew it`,
      };
    }
    // Block a certificate issued to one machine from passing as another (the CA names it in CN/OU).
    if (peer.commonName !== machine.name || (peer.role !== null && peer.role !== machine.role)) {
      return {
        ok: false,
        status: 403,
        code: 'wrong-identity',
        reason: `certificate ${certificate.serial} names ${peer.commonName}, but it was issued to ${machine.role} ${machine.name}`,
      };
    }
    return { ok: true, machine: { name: machine.name, role: machine.role, serial: certificate.serial } };
  };
}

/**
 * After the gate: note when each machine was last seen and from where, at most once per `intervalMs`
 * per machine (a sync makes hundreds of requests; one write is enough).
 */
export function touchLastSeen(
  db: MasterDb,
  opts: { intervalMs: number; clockMs: () => number; log: Logger },
): MiddlewareHandler<ServeEnv> {
  const last = new Map<string, number>();
  return async (c, next) => {
    const machine = c.get('machine');
    const t = opts.clockMs();
    if (machine && t - (last.get(machine.name) ?? -Infinity) >= opts.intervalMs) {
      last.set(machine.name, t);
      if (last.size > 100_000) last.clear();
      const address = (c.env?.incoming?.socket as TLSSocket | undefined)?.remoteAddress;
      try {
        await touch(db, machine.name, address);
      } catch (e) {
        opts.log.warn({ err: (e as Error).message, machine: machine.name }, 'could not record last seen');
      }
    }
    await next();
  };
}
