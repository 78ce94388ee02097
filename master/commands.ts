import { DepotsyncError } from '../src/errors.js';
import { optionalString, requireString } from '../src/command/args.js';
import type { Command, CommandContext } from '../src/command/command.js';
import { createProgress, formatBytes } from '../src/command/progress.js';
import { directoryCommands } from './directory/commands.js';
import { backupCommands } from './backup/commands.js';
import { deltaCommands } from './deltas/commands.js';
import { maintenanceCommands } from './maintenance/commands.js';
import { haCommands } from './ha/commands.js';
import { intFlag, trustCommands } from './trust/commands.js';

/** `depotsync master …` (docs/cli.md). Heavy modules load lazily so `depotsync help` stays fast. */
const dirOption = { dir: { type: 'string' as const } };

async function withMaster<T>(
  c: CommandContext,
  fn: (ctx: import('./context.js').MasterContext) => Promise<T>,
): Promise<T> {
  const { openMaster } = await import('./context.js');
  const ctx = await openMaster(requireString(c.values, 'dir', 'master'), c.log);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

function machineCommand(verb: 'approve' | 'block' | 'revoke' | 'renew'): Command {
  const summary = {
    approve:
      'approve a pending machine (issues its certificate); with --request/--out: offline enrollment by file',
    block: 'refuse a machine at once (it also goes on the signed revocation list)',
    revoke: "revoke a machine's certificates and publish the signed revocation list",
    renew: 'ask an approved machine to renew its certificate (new key, over mutual TLS) at its next contact',
  }[verb];
  return {
    path: ['master', verb],
    usage:
      verb === 'approve'
        ? 'master approve --dir M MACHINE | master approve --dir M --request FILE --out FILE'
        : `master ${verb} --dir M MACHINE`,
    summary,
    options: { ...dirOption, request: { type: 'string' }, out: { type: 'string' } },
    positionals: [0, 1],
    async run(c) {
      if (verb === 'approve' && (c.values.request || c.values.out))
        return (await import('./offline/commands.js')).approveByFile(c);
      const name = c.positionals[0];
      if (!name) throw new DepotsyncError('usage', `master ${verb}: give the MACHINE name`);
      return withMaster(c, async (ctx) => {
        const a = await import('./machines/actions.js');
        const who = { actor: 'cli' };
        const m =
          verb === 'approve'
            ? await a.approveMachine(ctx, name, who)
            : verb === 'block'
              ? await a.blockMachine(ctx, name, who)
              : verb === 'revoke'
                ? (await a.revokeMachine(ctx, name, who)).machine
                : await (await import('./machines/renew.js')).renewMachine(ctx, name, who);
        return {
          json: {
            name: m.name,
            role: m.role,
            state: m.state,
            serial: m.certSerial ?? null,
            notAfter: m.certNotAfter ?? null,
            renewRequested: m.renewRequested,
          },
          human: `${m.name} (${m.role}): ${m.state}${m.certSerial ? `, certificate ${m.certSerial} valid until ${m.certNotAfter}` : ''}${verb === 'renew' ? '; it renews at its next contact with the master' : ''}`,
        };
      });
    },
  };
}

/** Parse HOST:PORT (IPv6 in brackets) for --listen. */
export function parseListen(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    throw new DepotsyncError(
      'usage',
      `${what}: --listen must be HOST:PORT (e.g. 127.0.0.1:8443), got ${JSON.stringify(text)}`,
    );
  return { host: (m[1] ?? m[2]) as string, port };
}

export const masterCommands: Command[] = [
  {
    path: ['master', 'export'],
    usage: 'master export --dir M --depot MACHINE --out FILE [--from GEN] [--valid 30d] [--encrypt] [--json]',
    summary:
      'write a signed offline bundle taking depot MACHINE from generation GEN (default: its last report) to the current one',
    options: {
      ...dirOption,
      depot: { type: 'string' },
      out: { type: 'string' },
      from: { type: 'string' },
      valid: { type: 'string' },
      encrypt: { type: 'boolean' },
    },
    run: async (c) => (await import('./offline/commands.js')).exportCommand(c),
  },
  {
    path: ['master', 'import-status'],
    usage: 'master import-status --dir M FILE [--json]',
    summary: "record an air-gapped depot's signed status file (from its D/outbox/)",
    options: dirOption,
    positionals: [1, 1],
    run: async (c) => (await import('./offline/commands.js')).importStatusCommand(c),
  },
  {
    path: ['master', 'serve'],
    usage: 'master serve --dir M --listen HOST:PORT',
    summary:
      'serve the HTTPS API (mutual TLS), the operator API and the drop folder; re-signs the timestamp on schedule; SIGHUP reloads master.json and admin.json',
    options: { ...dirOption, listen: { type: 'string' } },
    logLevel: 'info',
    async run(c) {
      const { openMaster } = await import('./context.js');
      const { startMasterServer } = await import('./server/serve.js');
      const { host, port } = parseListen(
        optionalString(c.values, 'listen') ?? '127.0.0.1:8443',
        'master serve',
      );
      const { acquireMasterLock } = await import('./backup/lock.js');
      const { masterLayout } = await import('./layout.js');
      const { existsSync } = await import('node:fs');
      const layout = masterLayout(requireString(c.values, 'dir', 'master serve'));
      // Held while serving: `master restore` refuses to swap the database under a running master.
      const lock = existsSync(layout.config) ? acquireMasterLock(layout.dir, 'serve') : undefined;
      const ctx = await openMaster(layout.dir, c.log).catch((e: unknown) => {
        lock?.release();
        throw e;
      });
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const reloading = await import('./server/reload.js');
      const { serviceLogLevel } = await import('../src/config/reload.js');
      const onLogLevel = (configured: string) => {
        c.log.level = serviceLogLevel(optionalString(c.values, 'log-level'), configured, 'info').level;
      };
      // Until the server is up a SIGHUP has nothing to reload (and must not end the process).
      let reload = () => c.log.warn('SIGHUP before master serve started; nothing reloaded');
      const onHangup = () => reload();
      process.on('SIGHUP', onHangup);
      try {
        onLogLevel(ctx.config.logLevel);
        // Refused before serving: a master does not come up with a certificate that cannot work.
        const listener = reloading.masterListenerCertificate(ctx.config, new Date());
        const server = await startMasterServer(ctx, { host, port, listener, schedules: true });
        if (listener)
          c.log.info(
            { subject: listener.subject, notAfter: listener.notAfter.toISOString() },
            'serving the operator certificate of master.json tls.certFile',
          );
        // A certificate renewed in place (same files) is served without a reload too.
        const { ListenerCertificateWatcher } = await import('../src/net/listener-cert.js');
        const certWatch = new ListenerCertificateWatcher({
          apply: (cert) => server.setListenerCertificate(cert),
          log: c.log.child({ component: 'master.server' }),
        });
        certWatch.watch(ctx.config.tls);
        stop.signal.addEventListener('abort', () => certWatch.close());
        const reloader = new reloading.MasterReloader({
          dir: layout.dir,
          configPath: layout.config,
          config: ctx.config,
          server,
          log: c.log,
          onLogLevel,
          onListenerFiles: (tls) => certWatch.watch(tls),
        });
        reload = () => {
          try {
            reloader.reload();
          } catch {
            // Logged by reload with its reason; the running settings stay.
          }
        };
        c.log.info({ url: server.url }, 'master serving; Ctrl-C stops it');
        // A line other programs (and the demo) can wait for.
        c.stderr.write(`depotsync master listening on ${server.url}\n`);
        await new Promise<void>((resolve) =>
          stop.signal.aborted ? resolve() : stop.signal.addEventListener('abort', () => resolve()),
        );
        await server.close();
        return { json: { stopped: true, url: server.url }, human: 'master stopped' };
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.off('SIGHUP', onHangup);
        await ctx.close();
        lock?.release();
      }
    },
  },
  {
    path: ['master', 'init'],
    usage:
      'master init --dir M [--name NAME] [--host NAME]... [--root-keys N] [--root-threshold K] [--offline-root DIR]',
    summary:
      'create a master: TUF keys and root (K of N root keys, default 1 of 1; --offline-root writes them to DIR, not M), internal CA, server certificate, database; prints the root fingerprint',
    options: {
      ...dirOption,
      name: { type: 'string' },
      host: { type: 'string', multiple: true },
      'root-keys': { type: 'string' },
      'root-threshold': { type: 'string' },
      'offline-root': { type: 'string' },
    },
    async run(c) {
      const { initMaster } = await import('./init.js');
      const hosts = c.values.host as string[] | undefined;
      const name = optionalString(c.values, 'name');
      const rootKeys = intFlag(c, 'root-keys', 'master init');
      const rootThreshold = intFlag(c, 'root-threshold', 'master init');
      const offline = optionalString(c.values, 'offline-root');
      const r = await initMaster(requireString(c.values, 'dir', 'master init'), {
        log: c.log,
        ...(rootKeys !== undefined ? { rootKeys } : {}),
        ...(rootThreshold !== undefined ? { rootThreshold } : {}),
        ...(offline ? { offlineRootDir: offline } : {}),
        ...(name ? { name } : {}),
        ...(hosts?.length ? { hosts: [...new Set([...hosts, 'localhost', '127.0.0.1'])] } : {}),
      });
      return {
        json: {
          fingerprint: r.fingerprint,
          dir: r.dir,
          rootKeyFiles: r.rootKeyFiles,
          rootThreshold: r.rootThreshold,
        },
        human:
          `master created in ${r.dir}\nroot fingerprint (SHA-256 of ${r.rootFile}):\n${r.fingerprint}` +
          (offline
            ? `\nroot private keys (${r.rootThreshold} of ${r.rootKeyFiles.length} sign; keep them off the master):\n  ${r.rootKeyFiles.join('\n  ')}`
            : ''),
      };
    },
  },
  {
    path: ['master', 'publish'],
    usage: 'master publish --dir M --name N --version V [--allow-hardlinks] PATH',
    summary: 'publish a file or folder as package N@V: a new signed generation',
    options: {
      ...dirOption,
      name: { type: 'string' },
      version: { type: 'string' },
      'allow-hardlinks': { type: 'boolean' },
    },
    positionals: [1, 1],
    async run(c) {
      return withMaster(c, async (ctx) => {
        const { publish } = await import('./publish/publish.js');
        let progress: ReturnType<typeof createProgress> | undefined;
        const r = await publish(ctx, {
          name: requireString(c.values, 'name', 'master publish'),
          version: requireString(c.values, 'version', 'master publish'),
          path: c.positionals[0] as string,
          actor: 'cli',
          ...(c.values['allow-hardlinks'] === true ? { allowHardlinks: true } : {}),
          onProgress: (done, total) => {
            progress ??= createProgress('publish', total);
            progress.update(done);
          },
        });
        progress?.finish();
        return {
          json: {
            id: r.id,
            name: r.name,
            version: r.version,
            bytes: r.bytes,
            chunks: r.chunks,
            generation: r.generation,
            newChunks: r.newChunks,
            newBytes: r.newBytes,
            unchanged: r.unchanged,
          },
          human: r.unchanged
            ? `${r.name}@${r.version} is already published with this exact content (generation ${r.generation}); nothing changed`
            : `published ${r.name}@${r.version}: ${formatBytes(r.bytes)} in ${r.chunks} chunks (${r.newChunks} new, ${formatBytes(r.newBytes)} stored), generation ${r.generation}\nmanifest ${r.id}`,
        };
      });
    },
  },
  {
    path: ['master', 'unpublish'],
    usage: 'master unpublish --dir M NAME@VERSION',
    summary: 'remove a version from the next generation (its content is collected later)',
    options: dirOption,
    positionals: [1, 1],
    async run(c) {
      return withMaster(c, async (ctx) => {
        const { unpublish } = await import('./publish/unpublish.js');
        const r = await unpublish(ctx, c.positionals[0] as string, 'cli');
        return { json: r, human: `unpublished ${r.name}@${r.version}: generation ${r.generation}` };
      });
    },
  },
  {
    path: ['master', 'token'],
    usage: 'master token --dir M --role depot|agent [--ttl 24h]',
    summary: 'make a one-time enrollment token: a machine enrolling with it is approved at once',
    options: { ...dirOption, role: { type: 'string' }, ttl: { type: 'string' } },
    async run(c) {
      const role = requireString(c.values, 'role', 'master token');
      if (role !== 'depot' && role !== 'agent')
        throw new DepotsyncError(
          'usage',
          `master token: --role must be depot or agent, got ${JSON.stringify(role)}`,
        );
      const { parseDuration } = await import('../src/config/validate.js');
      const ttl = optionalString(c.values, 'ttl');
      return withMaster(c, async (ctx) => {
        const { createEnrollmentToken } = await import('./db/tokens.js');
        const { recordAudit } = await import('./db/audit.js');
        const { token, record } = await createEnrollmentToken(ctx.db, {
          role,
          createdBy: 'cli',
          ...(ttl ? { ttlMs: parseDuration('--ttl', ttl) } : {}),
        });
        await recordAudit(ctx.db, {
          actor: 'cli',
          action: 'token.create',
          target: role,
          detail: { id: record.id },
        });
        return { json: { token, role, expiresAt: record.expiresAt }, human: token };
      });
    },
  },
  {
    path: ['master', 'notify'],
    usage: 'master notify --dir M [--depot NAME] [--json]',
    summary:
      'ask depots (all, or one) to sync now: the running `master serve` passes it on their event streams',
    options: { ...dirOption, depot: { type: 'string' } },
    async run(c) {
      const depot = optionalString(c.values, 'depot');
      const { MACHINE_NAME } = await import('../src/pki/names.js');
      if (depot !== undefined && !MACHINE_NAME.test(depot))
        throw new DepotsyncError(
          'usage',
          `master notify: --depot must be a depot's machine name, got ${JSON.stringify(depot)}`,
        );
      return withMaster(c, async (ctx) => {
        const { requestSyncNow } = await import('./notify.js');
        const r = await requestSyncNow(ctx.db, { depot, actor: 'cli' });
        return {
          json: { seq: r.seq, depot: r.depot, requestedAt: r.requestedAt },
          human: `sync-now request ${r.seq} for ${r.depot === null ? 'every depot' : `depot ${r.depot}`} recorded; a running \`master serve\` passes it on within about a second`,
        };
      });
    },
  },
  ...directoryCommands,
  ...backupCommands,
  ...maintenanceCommands,
  ...haCommands,
  ...deltaCommands,
  ...trustCommands,
  machineCommand('approve'),
  machineCommand('block'),
  machineCommand('revoke'),
  machineCommand('renew'),
  {
    path: ['master', 'operator', 'add'],
    usage: 'master operator add --dir M --name NAME [--role admin|publisher|viewer]',
    summary: 'add an operator; prints its bearer token once',
    options: { ...dirOption, name: { type: 'string' }, role: { type: 'string' } },
    async run(c) {
      const role = optionalString(c.values, 'role') ?? 'viewer';
      if (!['admin', 'publisher', 'viewer'].includes(role))
        throw new DepotsyncError(
          'usage',
          `master operator add: --role must be admin, publisher or viewer, got ${JSON.stringify(role)}`,
        );
      return withMaster(c, async (ctx) => {
        const { addOperator } = await import('./db/operators.js');
        const { recordAudit } = await import('./db/audit.js');
        const name = requireString(c.values, 'name', 'master operator add');
        const { operator, token } = await addOperator(ctx.db, {
          name,
          role: role as 'admin' | 'publisher' | 'viewer',
          createdBy: 'cli',
          tokenDays: ctx.config.operatorTokenDays,
        });
        await recordAudit(ctx.db, {
          actor: 'cli',
          action: 'operator.add',
          target: operator.name,
          detail: { role },
        });
        return {
          json: { name: operator.name, role: operator.role, token, tokenExpiresAt: operator.tokenExpiresAt },
          human: `operator ${operator.name} (${operator.role}); token (shown once, valid until ${operator.tokenExpiresAt}):\n${token}`,
        };
      });
    },
  },
  {
    path: ['master', 'operator', 'remove'],
    usage: 'master operator remove --dir M --name NAME',
    summary: 'remove an operator (its token stops working at once)',
    options: { ...dirOption, name: { type: 'string' } },
    async run(c) {
      return withMaster(c, async (ctx) => {
        const { removeOperator } = await import('./db/operators.js');
        const { recordAudit } = await import('./db/audit.js');
        const name = requireString(c.values, 'name', 'master operator remove');
        await removeOperator(ctx.db, name);
        await recordAudit(ctx.db, { actor: 'cli', action: 'operator.remove', target: name });
        return { json: { name, removed: true }, human: `operator ${name} removed` };
      });
    },
  },
  // Operator administration: list and rotate.
  {
    path: ['master', 'operator', 'list'],
    usage: 'master operator list --dir M [--json]',
    summary: 'list operators: role, TOTP on/off, created, last used, token expiry',
    options: dirOption,
    async run(c) {
      return withMaster(c, async (ctx) => {
        const { listOperators } = await import('./db/operators.js');
        const now = ctx.db.now().getTime();
        const ops = (await listOperators(ctx.db)).map((o) => ({
          name: o.name,
          role: o.role,
          totp: o.hasTotp,
          disabled: o.disabled,
          createdAt: o.createdAt,
          lastUsedAt: o.lastUsedAt,
          tokenExpiresAt: o.tokenExpiresAt,
          tokenExpired: o.tokenExpiresAt !== null && Date.parse(o.tokenExpiresAt) <= now,
          directoryDn: o.directoryDn,
        }));
        const rows = [
          ['NAME', 'ROLE', 'TOTP', 'CREATED', 'LAST USED', 'TOKEN EXPIRES'],
          ...ops.map((o) => [
            o.disabled ? `${o.name} (disabled)` : o.name,
            o.role,
            o.totp ? 'on' : 'off',
            o.createdAt.slice(0, 16).replace('T', ' '),
            o.lastUsedAt ? o.lastUsedAt.slice(0, 16).replace('T', ' ') : 'never',
            o.tokenExpiresAt
              ? `${o.tokenExpiresAt.slice(0, 10)}${o.tokenExpired ? ' (expired)' : ''}`
              : o.directoryDn
                ? 'directory login'
                : 'never',
          ]),
        ];
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
        const table = rows
          .map((r) =>
            r
              .map((v, i) => v.padEnd(widths[i]!))
              .join('  ')
              .trimEnd(),
          )
          .join('\n');
        return {
          json: { operators: ops },
          human: ops.length ? table : 'no operators (add one with `depotsync master operator add`)',
        };
      });
    },
  },
  {
    path: ['master', 'operator', 'rotate'],
    usage: 'master operator rotate --dir M --name NAME [--json]',
    summary: "replace an operator's token (printed once; the old one stops working at once)",
    options: { ...dirOption, name: { type: 'string' } },
    async run(c) {
      const name = requireString(c.values, 'name', 'master operator rotate');
      return withMaster(c, async (ctx) => {
        const { rotateOperator } = await import('./db/operators.js');
        const { recordAudit } = await import('./db/audit.js');
        const { token, expiresAt } = await rotateOperator(ctx.db, name, ctx.config.operatorTokenDays);
        await recordAudit(ctx.db, {
          actor: 'cli',
          action: 'operator.rotate',
          target: name,
          detail: { tokenExpiresAt: expiresAt },
        });
        return {
          json: { name, token, tokenExpiresAt: expiresAt },
          human: `operator ${name}: new token (shown once, valid until ${expiresAt}; the old one no longer works):\n${token}`,
        };
      });
    },
  },
];
