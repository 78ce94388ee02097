import { optionalString, requireString, requireStrings } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';
import { DepotsyncError, isDepotsyncError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { openDepot, type OpenDepotOptions } from './depot.js';
import { initDepot } from './init.js';
import type { SyncResult } from './sync/engine.js';

/**
 * `depot sync`: one sync now (ignoring the window), single flight with any running `depot serve`. When
 * that serve is syncing already (distribute now starts one within a second of a publish), this waits for
 * it and then runs its own, which finds what the other left to do: the command always ends with a sync
 * that started after it was asked for.
 */
export async function runDepotSync(
  dir: string,
  opts: { logger: Logger; waitMs?: number; pollMs?: number } & Partial<OpenDepotOptions>,
): Promise<SyncResult> {
  const depot = openDepot(dir, opts);
  const deadline = Date.now() + (opts.waitMs ?? 30 * 60_000);
  let told = false;
  try {
    for (;;) {
      try {
        return await depot.engine.sync();
      } catch (e) {
        if (!isDepotsyncError(e, 'conflict') || Date.now() >= deadline) throw e;
        if (!told)
          opts.logger.warn(
            { reason: (e as Error).message },
            'waiting for the sync already running on this depot',
          );
        told = true;
        await new Promise((r) => setTimeout(r, opts.pollMs ?? 250));
      }
    }
  } finally {
    await depot.close();
  }
}

function strings(v: unknown): string[] {
  return Array.isArray(v)
    ? v.filter((x): x is string => typeof x === 'string')
    : typeof v === 'string'
      ? [v]
      : [];
}

/** The depot role's commands (docs/cli.md); the CLI registry adds them. */
export const depotCommands: Command[] = [
  {
    path: ['depot', 'init'],
    usage:
      'depot init --dir D --master URL [--master URL]... --fingerprint FP [--token T] [--name NAME] [--parent URL] [--listen HOST:PORT] [--host NAME]... [--ca FILE | --ca-fingerprint HEX] [--wait SECONDS] | depot init --dir D --offline --fingerprint FP --root 1.root.json [--name NAME] [--listen HOST:PORT] [--host NAME]...',
    summary:
      "create the depot's key, verify the master's root against the pinned fingerprint, and enroll (with a token, or pending approval)",
    options: {
      dir: { type: 'string' },
      master: { type: 'string', multiple: true },
      fingerprint: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      parent: { type: 'string' },
      listen: { type: 'string' },
      host: { type: 'string', multiple: true },
      ca: { type: 'string' },
      'ca-fingerprint': { type: 'string' },
      wait: { type: 'string' },
      offline: { type: 'boolean' },
      root: { type: 'string' },
    },
    async run(ctx) {
      const cmd = 'depot init';
      if (ctx.values.offline)
        return (await import('./offline/commands.js')).initOfflineCommand(ctx, strings(ctx.values.host));
      const waitText = optionalString(ctx.values, 'wait');
      const waitS = waitText === undefined ? 0 : Number(waitText);
      if (!Number.isInteger(waitS) || waitS < 0)
        throw new DepotsyncError(
          'usage',
          `${cmd}: --wait must be a number of seconds, got ${JSON.stringify(waitText)}`,
        );
      const r = await initDepot({
        dir: requireString(ctx.values, 'dir', cmd),
        masterUrl: requireStrings(ctx.values, 'master', cmd),
        fingerprint: requireString(ctx.values, 'fingerprint', cmd),
        token: optionalString(ctx.values, 'token'),
        name: optionalString(ctx.values, 'name'),
        parentUrl: optionalString(ctx.values, 'parent'),
        listen: optionalString(ctx.values, 'listen'),
        hosts: strings(ctx.values.host),
        caFile: optionalString(ctx.values, 'ca'),
        caFingerprint: optionalString(ctx.values, 'ca-fingerprint'),
        waitMs: waitS * 1000,
        log: ctx.log,
      });
      const human =
        r.state === 'approved'
          ? `depot ${r.name} enrolled in ${r.dir}; master CA SHA-256 ${r.caFingerprint} (compare it with the master's); start it with: depotsync depot serve --dir ${r.dir}`
          : `depot ${r.name} initialised in ${r.dir}; enrollment ${r.request} waits for approval (depotsync master approve ${r.name}); \`depotsync depot serve --dir ${r.dir}\` finishes it`;
      return { json: r, human };
    },
  },
  {
    path: ['depot', 'serve'],
    usage: 'depot serve --dir D [--listen HOST:PORT]',
    summary:
      'serve agents and child depots over mutual TLS, sync on the schedule, scrub and collect garbage; SIGHUP reloads depot.json',
    options: { dir: { type: 'string' }, listen: { type: 'string' } },
    logLevel: 'info',
    async run(ctx) {
      const { startDepotService } = await import('./service.js');
      const { serviceLogLevel } = await import('../src/config/reload.js');
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      // Until the service is up a SIGHUP has nothing to reload (and must not end the process).
      let reload = () => ctx.log.warn('SIGHUP before depot serve started; nothing reloaded');
      const onHangup = () => reload();
      process.on('SIGHUP', onHangup);
      try {
        const service = await startDepotService(requireString(ctx.values, 'dir', 'depot serve'), {
          logger: ctx.log,
          listen: optionalString(ctx.values, 'listen'),
          signal: stop.signal,
          onLogLevel: (configured) => {
            ctx.log.level = serviceLogLevel(
              optionalString(ctx.values, 'log-level'),
              configured,
              'info',
            ).level;
          },
        });
        if (!service) return { json: { stopped: true }, human: 'stopped before the enrollment was approved' };
        reload = () => {
          try {
            service.reload();
          } catch {
            // Logged by reload with its reason; the running settings stay.
          }
        };
        ctx.log.info({ url: service.url }, 'depot serve running; Ctrl-C stops it');
        await new Promise<void>((resolve) =>
          stop.signal.aborted ? resolve() : stop.signal.addEventListener('abort', () => resolve()),
        );
        const generation = service.depot.db.served()?.generation ?? null;
        await service.stop();
        return { json: { stopped: true, generation }, human: 'depot stopped' };
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.off('SIGHUP', onHangup);
      }
    },
  },
  {
    path: ['depot', 'sync'],
    usage: 'depot sync --dir D [--json]',
    summary:
      'sync now: fetch, verify and switch to the newest generation; --json: {generation,chunksFetched,bytesFetched,chunkWireBytes,chunkPlainBytes}',
    options: { dir: { type: 'string' } },
    async run(ctx) {
      const r = await runDepotSync(requireString(ctx.values, 'dir', 'depot sync'), { logger: ctx.log });
      return {
        json: {
          generation: r.generation,
          chunksFetched: r.chunksFetched,
          bytesFetched: r.bytesFetched,
          chunkWireBytes: r.chunkWireBytes,
          chunkPlainBytes: r.chunkPlainBytes,
        },
        human: `generation ${r.generation}${r.switched ? ' (switched)' : ' (unchanged)'}: ${r.chunksFetched} chunks (${r.chunkPlainBytes} bytes plain, ${r.chunkWireBytes} on the wire), ${r.bytesFetched} bytes fetched in ${r.durationMs} ms`,
      };
    },
  },
  {
    path: ['depot', 'import'],
    usage: 'depot import --dir D FILE [--json]',
    summary:
      'import an offline bundle (same verification as a sync) or an offline enrollment reply; --json: {generation,chunksImported,bytesImported,chunkWireBytes,chunkPlainBytes}',
    options: { dir: { type: 'string' } },
    positionals: [1, 1],
    run: async (ctx) => (await import('./offline/commands.js')).importCommand(ctx),
  },
  {
    path: ['depot', 'status'],
    usage: 'depot status --dir D [--json]',
    summary: "the depot's own state: served and target generation, last sync, store, scrub, certificate",
    options: { dir: { type: 'string' } },
    async run(ctx) {
      const { depotStatus, depotStatusLines } = await import('./status.js');
      const s = await depotStatus(requireString(ctx.values, 'dir', 'depot status'));
      return { json: s, human: depotStatusLines(s) };
    },
  },
];
