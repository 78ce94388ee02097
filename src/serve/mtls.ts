import type { TLSSocket } from 'node:tls';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../log.js';
import { peerIdentity, type PeerIdentity } from '../net/tls.js';
import type { MachineRef, ServeEnv } from './env.js';

export type CertifiedPeer = Extract<PeerIdentity, { kind: 'cert' }>;

/** The role-specific decision on a certificate that chains to our CA and is in date. */
export type AuthorizeMachine = (
  peer: CertifiedPeer,
  /** The connection, for a decision that needs the certificate itself (a restored master adopting it). */
  socket?: TLSSocket,
) => AuthorizeVerdict | Promise<AuthorizeVerdict>;

export type AuthorizeVerdict =
  { ok: true; machine: MachineRef } | { ok: false; status: 401 | 403; code: string; reason: string };

/**
 * The mutual-TLS gate: the first middleware on every route that is not public (docs/http.md). The TLS
 * layer requests a certificate without rejecting, so that this answers 401/403 with the reason instead of
 * a reset socket. It runs on every request, not once per connection: a machine blocked while its
 * keep-alive connection is open is refused on its next request.
 */
export function mutualTls(opts: {
  authorize: AuthorizeMachine;
  log: Logger;
  now?: () => Date;
}): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    const socket = c.env?.incoming?.socket as TLSSocket | undefined;
    const refuse = (status: 401 | 403, code: string, message: string) => {
      opts.log.info({ path: c.req.path, status, code, address: socket?.remoteAddress }, 'mutual TLS refused');
      return c.json({ error: { code, message } }, status);
    };
    if (!socket || typeof socket.getPeerCertificate !== 'function') {
      return refuse(401, 'no-certificate', 'this endpoint needs HTTPS with a machine certificate');
    }
    const peer = peerIdentity(socket, opts.now ? { now: opts.now } : undefined);
    switch (peer.kind) {
      case 'none':
        return refuse(
          401,
          'no-certificate',
          'no client certificate: this endpoint needs a machine certificate (enroll with `depotsync depot init` or `depotsync agent init`)',
        );
      case 'untrusted':
        return refuse(
          401,
          'unknown-issuer',
          `client certificate not issued by this master's CA (${peer.reason})`,
        );
      case 'expired':
        return refuse(
          403,
          'expired',
          `client certificate expired at ${peer.notAfter.toISOString()}; an expired certificate cannot renew: enroll the machine again`,
        );
      case 'cert': {
        const verdict = await opts.authorize(peer, socket);
        if (!verdict.ok) return refuse(verdict.status, verdict.code, verdict.reason);
        c.set('machine', verdict.machine);
        await next();
        return;
      }
    }
  };
}
