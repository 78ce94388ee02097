import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Hono } from 'hono';
import { silentLogger } from '../../../src/log.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { adminSettings, type AdminSettingsInput } from '../../../master/admin/config.js';
import { AdminService } from '../../../master/admin/service.js';
import type { MasterConfig } from '../../../master/config.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { recordDepotStatus, type DepotStatusInput } from '../../../master/db/status.js';
import { addOperator, type OperatorRole } from '../../../master/db/operators.js';
import { initMaster } from '../../../master/init.js';
import { publish } from '../../../master/publish/publish.js';
import { createMasterApp } from '../../../master/server/app.js';
import { tempDir } from '../../helpers/tmp.js';

/**
 * A master (real directory, keys, database) with a hand-moved clock, its admin service and hono app
 * (no sockets: `app.request`). The client address comes from the `x-test-address` header.
 */
export interface AdminFixture {
  ctx: MasterContext;
  admin: AdminService;
  app: Hono<ServeEnv>;
  dir: string;
  clock: { t: number; advance(ms: number): void };
  tokens: Record<OperatorRole, string>;
  close(): Promise<void>;
}

export async function adminFixture(
  opts: {
    settings?: AdminSettingsInput;
    fetch?: typeof fetch;
    start?: number;
    freeDiskBytes?: () => number | null;
    /** master.json settings written by `master init` (read back through the file, as a master would). */
    masterConfig?: Partial<MasterConfig>;
  } = {},
): Promise<AdminFixture> {
  const tmp = tempDir('depotsync-admin-');
  const dir = join(tmp.dir, 'M');
  await initMaster(dir, { log: silentLogger(), ...(opts.masterConfig ? { config: opts.masterConfig } : {}) });
  const clock = {
    t: opts.start ?? Date.now(),
    advance(ms: number) {
      this.t += ms;
    },
  };
  const now = () => new Date(clock.t);
  const ctx = await openMaster(dir, silentLogger(), { now });
  const tokens = {} as Record<OperatorRole, string>;
  for (const role of ['admin', 'publisher', 'viewer'] as const)
    tokens[role] = (await addOperator(ctx.db, { name: `op-${role}`, role, createdBy: 'test' })).token;
  const admin = new AdminService({
    ctx,
    now,
    settings: adminSettings(opts.settings),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
    ...(opts.freeDiskBytes ? { freeDiskBytes: opts.freeDiskBytes } : {}),
  });
  const app = createMasterApp({
    ctx,
    now,
    adminService: admin,
    addressOf: (c) => c.req.header('x-test-address') ?? '192.0.2.1',
  });
  return {
    ctx,
    admin,
    app,
    dir,
    clock,
    tokens,
    async close() {
      await admin.close();
      await ctx.close();
      tmp.cleanup();
    },
  };
}

/** A depot record as enrollment and approval leave it (SQL: no RSA key generation per test depot). */
export async function insertDepot(
  ctx: MasterContext,
  name: string,
  o: {
    parent?: string;
    state?: 'approved' | 'blocked' | 'pending';
    role?: 'depot' | 'agent';
    certNotAfter?: string;
    at?: string;
  } = {},
): Promise<void> {
  const at = o.at ?? ctx.db.now().toISOString();
  const state = o.state ?? 'approved';
  await ctx.db.sql.run(
    `INSERT INTO machines (name, role, state, requested_at, state_changed_at, cert_serial, cert_not_after, parent, csr_pem)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      name,
      o.role ?? 'depot',
      state,
      at,
      at,
      state === 'pending' ? null : `${Buffer.from(name).toString('hex').slice(0, 16)}`,
      state === 'pending'
        ? null
        : (o.certNotAfter ?? new Date(Date.parse(at) + 365 * 86_400_000).toISOString()),
      o.parent ?? null,
      state === 'pending'
        ? '-----BEGIN CERTIFICATE REQUEST-----\nx\n-----END CERTIFICATE REQUEST-----'
        : null,
    ],
  );
}

const sequences = new Map<string, number>();

/** File a status report for `name` as the mutual-TLS route would. */
export async function report(
  ctx: MasterContext,
  name: string,
  r: Partial<DepotStatusInput> & { servedGeneration: number },
): Promise<void> {
  const key = `${ctx.layout.dir}:${name}`;
  const sequence = (sequences.get(key) ?? 0) + 1;
  sequences.set(key, sequence);
  await recordDepotStatus(ctx.db, name, {
    targetGeneration: r.servedGeneration,
    bytesFetched: 0,
    chunksFetched: 0,
    reportedAt: ctx.db.now().toISOString(),
    sequence,
    ...r,
  });
}

/** Publish `bytes` as name@version from a temp file; returns the new generation. */
export async function publishBytes(
  f: AdminFixture,
  name: string,
  version: string,
  bytes: Buffer,
): Promise<number> {
  const path = join(f.dir, '..', `${name}-${version}.bin`);
  writeFileSync(path, bytes);
  return (await publish(f.ctx, { name, version, path, actor: 'test' })).generation;
}

/** A browser, roughly: a cookie jar over `app.request`, following nothing. */
export class Browser {
  cookies = new Map<string, string>();
  constructor(
    private readonly app: Hono<ServeEnv>,
    private readonly address = '198.51.100.7',
  ) {}

  async request(
    path: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      'x-test-address': this.address,
      host: 'master.test',
      ...init.headers,
    };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await this.app.request(`https://master.test${path}`, {
      method: init.method ?? (body !== undefined ? 'POST' : 'GET'),
      headers,
      ...(body !== undefined ? { body } : {}),
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      const k = pair!.slice(0, eq);
      const v = pair!.slice(eq + 1);
      if (v === '' || /max-age=0/i.test(c)) this.cookies.delete(k);
      else this.cookies.set(k, v);
    }
    return res;
  }

  /** The hidden CSRF token of a page. */
  static csrf(html: string): string {
    const m = /name="_csrf" value="([^"]+)"/.exec(html);
    if (!m) throw new Error('no CSRF token on the page');
    return m[1]!;
  }

  /** Log in through the form; returns the final response of the POST. */
  async login(operator: string, token: string, code = ''): Promise<Response> {
    const page = await (await this.request('/dashboard/login')).text();
    return this.request('/dashboard/login', { form: { _csrf: Browser.csrf(page), operator, token, code } });
  }
}
