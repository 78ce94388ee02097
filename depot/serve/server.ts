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
  /**
   * Serve an operator-supplied certificate and key (checked by the caller) instead of the machine
   * certificate from the next handshake on; undefined goes back to the machine certificate. Client
   * certificates are still checked against the internal CA.
   */
  setListenerCertificate(cert: { keyPem: string; certPem: string } | undefined): void;
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
  /** An operator certificate to serve instead of the machine certificate. */
  listener?: { keyPem: string; certPem: string } | undefined;
  host: string;
  port: number;
  logger: Logger;
}): Promise<DepotServer> {
  const log = opts.logger.child({ component: 'depot.server' });
  let machine = { keyPem: opts.keyPem, certPem: opts.certPem, caPem: opts.caPem };
  let listener = opts.listener;
  const context = () => tlsServerOptions({ ...machine, ...(listener ?? {}) });
  const server = https.createServer(context(), getRequestListener(opts.app.fetch));
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
    setCredentials: (creds) => {
      machine = creds;
      server.setSecureContext(context());
    },
    setListenerCertificate: (cert) => {
      listener = cert;
      server.setSecureContext(context());
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
