import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import { fromSystemError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { tlsServerOptions } from '../../src/net/tls.js';
import type { ServeEnv } from '../../src/serve/env.js';

export interface DepotServer {
  server: https.Server;
  port: number;
  /**
   * Serve with a renewed machine certificate from the next handshake on (no restart;
   * open connections keep theirs).
   */
  setCredentials(creds: { keyPem: string; certPem: string; caPem: string }): void;
  close(): Promise<void>;
}

/**
 * Serve the depot app over HTTPS: the depot's machine certificate (issued with serverAuth and the host
 * names it asked for) as server certificate, and the master's CA as the only issuer of client
 * certificates. The TLS layer asks for a certificate without rejecting; the mutual-TLS middleware
 * answers with the reason (tlsServerOptions).
 */
export async function startDepotServer(opts: {
  app: Hono<ServeEnv>;
  keyPem: string;
  certPem: string;
  caPem: string;
  host: string;
  port: number;
  logger: Logger;
}): Promise<DepotServer> {
  const log = opts.logger.child({ component: 'depot.server' });
  const server = https.createServer(
    tlsServerOptions({ keyPem: opts.keyPem, certPem: opts.certPem, caPem: opts.caPem }),
    getRequestListener(opts.app.fetch),
  );
  server.on('tlsClientError', (e: NodeJS.ErrnoException) =>
    log.debug({ err: e.message, code: e.code }, 'TLS handshake failed'),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(fromSystemError(e, `depot server on ${opts.host}:${opts.port}`)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: opts.host, port }, 'depot serving');
  return {
    server,
    port,
    setCredentials: (creds) => server.setSecureContext(tlsServerOptions(creds)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
