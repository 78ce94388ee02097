import https from 'node:https';
import { join } from 'node:path';
import { silentLogger } from '../../../src/log.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { tlsBaseOptions } from '../../../src/net/tls.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import type { MasterConfig } from '../../../master/config.js';
import { addOperator, type OperatorRole } from '../../../master/db/operators.js';
import { createEnrollmentToken } from '../../../master/db/tokens.js';
import {
  startMasterServer,
  type MasterServer,
  type MasterServerOptions,
} from '../../../master/server/serve.js';
import { tempDir } from '../../helpers/tmp.js';

export interface Reply {
  status: number;
  headers: import('node:http').IncomingHttpHeaders;
  body: Buffer;
  reusedSocket: boolean;
  json(): any;
}

export interface CallOptions {
  method?: string;
  body?: Buffer | string | object;
  headers?: Record<string, string>;
  /** Machine identity for mutual TLS. */
  cert?: string;
  key?: string;
  agent?: https.Agent;
  localAddress?: string;
  /** Send the body with chunked transfer encoding (no Content-Length), in pieces of this many bytes. */
  chunkedBytes?: number;
}

/** One HTTPS request against the test master; any status resolves (the test asserts it). */
export function call(m: TestMaster, path: string, o: CallOptions = {}): Promise<Reply> {
  const url = new URL(path, m.server.url);
  let body: Buffer | undefined;
  const headers: Record<string, string> = { ...o.headers };
  if (Buffer.isBuffer(o.body)) body = o.body;
  else if (typeof o.body === 'string') body = Buffer.from(o.body);
  else if (o.body !== undefined) {
    body = Buffer.from(JSON.stringify(o.body));
    headers['content-type'] ??= 'application/json';
  }
  if (body && !o.chunkedBytes) headers['content-length'] = String(body.length);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        ...tlsBaseOptions(),
        method: o.method ?? (body ? 'POST' : 'GET'),
        headers,
        ca: m.ctx.ca.certPem,
        ...(o.cert ? { cert: o.cert, key: o.key } : {}),
        ...(o.agent ? { agent: o.agent } : { agent: false }),
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const b = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: b,
            reusedSocket: req.reusedSocket,
            json: () => JSON.parse(b.toString('utf8')),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body && o.chunkedBytes) {
      for (let at = 0; at < body.length; at += o.chunkedBytes)
        req.write(body.subarray(at, at + o.chunkedBytes));
      req.end();
    } else {
      req.end(body);
    }
  });
}

export interface TestMaster {
  ctx: MasterContext;
  server: MasterServer;
  dir: string;
  /** Operators made at start: bearer tokens by role. */
  tokens: Record<OperatorRole, string>;
  close(): Promise<void>;
}

export async function startTestMaster(
  opts: { config?: Partial<MasterConfig>; server?: Partial<MasterServerOptions> } = {},
): Promise<TestMaster> {
  const tmp = tempDir('depotsync-master-server-');
  const dir = join(tmp.dir, 'M');
  await initMaster(dir, { log: silentLogger(), ...(opts.config ? { config: opts.config } : {}) });
  const ctx = await openMaster(dir, silentLogger());
  const tokens = {} as Record<OperatorRole, string>;
  for (const role of ['admin', 'publisher', 'viewer'] as const) {
    tokens[role] = (await addOperator(ctx.db, { name: `op-${role}`, role, createdBy: 'test' })).token;
  }
  const server = await startMasterServer(ctx, {
    host: '127.0.0.1',
    port: 0,
    dropbox: false,
    refresher: false,
    ...opts.server,
  });
  return {
    ctx,
    server,
    dir,
    tokens,
    async close() {
      await server.close();
      await ctx.close();
      tmp.cleanup();
    },
  };
}

export interface MachineIdentity {
  name: string;
  role: 'depot' | 'agent';
  keyPem: string;
  csrPem: string;
  cert: string;
}

/** Enroll a machine with a fresh one-time token: approved at once, certificate returned. */
export async function enrollWithToken(
  m: TestMaster,
  name: string,
  role: 'depot' | 'agent' = 'depot',
): Promise<MachineIdentity> {
  const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: name, role });
  const { token } = await createEnrollmentToken(m.ctx.db, { role, createdBy: 'test' });
  const r = await call(m, '/v1/enroll', { body: { name, role, csr: csrPem, token } });
  if (r.status !== 200) throw new Error(`enrollment of ${name} failed: ${r.status} ${r.body.toString()}`);
  return { name, role, keyPem, csrPem, cert: r.json().certificate as string };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}
