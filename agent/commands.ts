import { readFileSync } from 'node:fs';
import { optionalString, requireString, requireStrings } from '../src/command/args.js';
import type { Command, CommandContext } from '../src/command/command.js';
import { createProgress, formatBytes } from '../src/command/progress.js';
import { DepotsyncError } from '../src/errors.js';

/** `depotsync agent …` (docs/cli.md). Heavy modules load lazily so `depotsync help` stays fast. */
const dirOption = { dir: { type: 'string' as const } };

export async function withAgent<T>(
  c: CommandContext,
  fn: (a: import('./agent.js').AgentContext) => Promise<T>,
): Promise<T> {
  const { openAgent } = await import('./agent.js');
  const a = await openAgent(requireString(c.values, 'dir', 'agent'), c.log);
  try {
    return await fn(a);
  } finally {
    a.close();
  }
}

/**
 * The ranking, with the signed depot directory refreshed first (from the sources in the previous
 * order): a depot the operator removed is dropped, a new one joins, and the order is made again.
 */
export async function ranked(a: import('./agent.js').AgentContext, log: CommandContext['log']) {
  const { rankSources } = await import('./sources.js');
  const { loadAdoptedDirectory, refreshDirectory } = await import('./directory.js');
  const now = () => new Date();
  const rank = (directory: import('../src/wire/depot-directory.js').DepotDirectory | undefined) =>
    rankSources({
      config: a.config,
      state: a.state,
      now,
      directory,
      probe: async (s, timeoutMs) => {
        const r = a.connect(s, { timeoutMs });
        try {
          return await r.probe(AbortSignal.timeout(timeoutMs));
        } finally {
          r.close();
        }
      },
    });
  const before = await rank(loadAdoptedDirectory(a.layout.dir)?.directory);
  const refreshed = await refreshDirectory({
    agentDir: a.layout.dir,
    sources: before,
    connect: (s) => a.connect(s),
    store: a.store,
    fingerprint: a.config.fingerprint,
    state: a.state,
    now,
    penaltyMs: a.config.fetch.penaltyMs,
    log,
  });
  return { sources: await rank(refreshed.adopted?.directory), directory: refreshed };
}

export const agentCommands: Command[] = [
  {
    path: ['agent', 'init'],
    usage:
      'agent init --dir A --master URL [--master URL]... --fingerprint FP [--token T] [--depot [NAME[@SITE]=]URL]... [--site S] [--name N] [--ca FILE | --ca-fingerprint HEX]',
    summary:
      'set up an agent: pin the root, make its key, enroll with the master (token: at once; else pending until approved)',
    options: {
      ...dirOption,
      master: { type: 'string', multiple: true },
      fingerprint: { type: 'string' },
      token: { type: 'string' },
      depot: { type: 'string', multiple: true },
      site: { type: 'string' },
      name: { type: 'string' },
      ca: { type: 'string' },
      'ca-fingerprint': { type: 'string' },
    },
    async run(c) {
      const dir = requireString(c.values, 'dir', 'agent init');
      const { existsSync } = await import('node:fs');
      const { agentLayout } = await import('./layout.js');
      const layout = agentLayout(dir);
      if (existsSync(layout.config) && existsSync(layout.enrollment) && !c.values.master) {
        const { loadAgentConfig, configuredAgentMasterUrls } = await import('./config.js');
        const { pollAgentEnrollment } = await import('./init.js');
        const config = loadAgentConfig(layout.config);
        const r = await pollAgentEnrollment(dir, configuredAgentMasterUrls(config), c.log);
        return {
          json: { dir: layout.dir, name: config.name, ...r },
          human:
            r.state === 'approved'
              ? `agent ${config.name}: approved; certificate installed`
              : `agent ${config.name}: still waiting for approval (request ${r.request})`,
        };
      }
      const { initAgent } = await import('./init.js');
      const { parseDepotFlag } = await import('./config.js');
      const caFile = optionalString(c.values, 'ca');
      const r = await initAgent({
        dir,
        masterUrl: requireStrings(c.values, 'master', 'agent init'),
        fingerprint: requireString(c.values, 'fingerprint', 'agent init'),
        token: optionalString(c.values, 'token'),
        depots: ((c.values.depot as string[] | undefined) ?? []).map(parseDepotFlag),
        site: optionalString(c.values, 'site'),
        name: optionalString(c.values, 'name'),
        caPem: caFile ? readFileSync(caFile, 'utf8') : undefined,
        caFingerprint: optionalString(c.values, 'ca-fingerprint'),
        log: c.log,
      });
      return {
        json: r,
        human:
          r.state === 'approved'
            ? `agent ${r.name} enrolled in ${r.dir} (root v${r.rootVersion} pinned; master CA ${r.caFingerprint})`
            : `agent ${r.name} created in ${r.dir}; enrollment ${r.request} waits for approval (depotsync master approve --dir M ${r.name}), then run: depotsync agent init --dir ${dir}`,
      };
    },
  },
  {
    path: ['agent', 'fetch'],
    usage: 'agent fetch --dir A NAME[@VERSION] --out PATH [--exec CMD | --install [--install-args ARGS]]',
    summary:
      'download a package from the nearest depot (or the master), verify everything, move it to PATH; --exec runs CMD PATH after verification, --install runs a Windows installer (.exe, or .msi through msiexec)',
    options: {
      ...dirOption,
      out: { type: 'string' },
      exec: { type: 'string' },
      install: { type: 'boolean' },
      'install-args': { type: 'string' },
    },
    positionals: [1, 1],
    async run(c) {
      const { checkOutputPath } = await import('./windows/paths.js');
      // Reserved device names, drive-relative and over-long paths: refused before anything is fetched.
      const out = checkOutputPath(requireString(c.values, 'out', 'agent fetch'));
      const exec = optionalString(c.values, 'exec');
      const install = c.values.install === true;
      const installArgs = optionalString(c.values, 'install-args');
      if (install && exec !== undefined)
        throw new DepotsyncError('usage', 'agent fetch: --exec and --install exclude each other');
      if (installArgs !== undefined && !install)
        throw new DepotsyncError('usage', 'agent fetch: --install-args goes with --install');
      const launcher = await import('./exec.js');
      // Checked before anything is fetched: a fetch whose installer could never run is not started.
      if (install) launcher.checkInstallTarget(out);
      else if (exec !== undefined) launcher.execLaunch(exec, out);
      const { parsePackageRef } = await import('./fetch/catalog.js');
      const want = parsePackageRef(c.positionals[0] as string);
      // Renew the machine certificate first when due (2/3 of its life) or asked for by the operator.
      await (
        await import('./renew.js')
      ).renewAgentIfDue(requireString(c.values, 'dir', 'agent fetch'), c.log);
      const r = await withAgent(c, async (a) => {
        const { fetchPackage } = await import('./fetch/fetch.js');
        const { sources } = await ranked(a, c.log);
        let progress: ReturnType<typeof createProgress> | undefined;
        const result = await fetchPackage({
          ...want,
          out,
          sources,
          connect: (s) => a.connect(s),
          cacheDir: a.layout.cacheDir,
          manifestDir: a.layout.manifestsDir,
          store: a.store,
          fingerprint: a.config.fingerprint,
          state: a.state,
          settings: a.config.fetch,
          logger: c.log,
          onProgress: (done, total) => {
            progress ??= createProgress(`fetch ${want.name}`, total, c.stderr as NodeJS.WriteStream);
            progress.update(done);
          },
        });
        progress?.finish();
        return result;
      });
      const json = {
        id: r.id,
        name: r.name,
        version: r.version,
        bytes: r.bytes,
        source: r.source,
        chunks: r.chunks,
        chunksFromOld: r.chunksFromOld,
        chunksFromDeltas: r.chunksFromDeltas,
        chunkPlainBytes: r.chunkPlainBytes,
        chunkWireBytes: r.chunkWireBytes,
      };
      const human = `fetched ${r.name}@${r.version} (${formatBytes(r.bytes)}, verified) from ${r.source.join(', ')} into ${r.path}`;
      if (exec === undefined && !install) return { json, human };
      // Only reached after fetchPackage verified and committed: nothing unverified is ever run.
      const launch = install
        ? launcher.installLaunch(r.path, installArgs)
        : launcher.execLaunch(exec!, r.path);
      if (!c.json) c.stderr.write(`${human}\n`);
      const exitCode = await launcher.runAfterVerify(launch, r.path, {
        stdoutToStderr: c.json,
        installer: install,
      });
      const rebootRequired = install && launcher.REBOOT_CODES.has(exitCode);
      return {
        json: { ...json, exitCode, ...(install ? { rebootRequired } : {}) },
        human: install
          ? `installer exited with code ${exitCode}${rebootRequired ? ' (installed; a restart is needed)' : ''}`
          : '',
        exitCode,
      };
    },
  },
  {
    path: ['agent', 'depots'],
    usage: 'agent depots --dir A',
    summary: 'the order in which the agent uses its depots and the master, and why (probes round-trip times)',
    options: dirOption,
    async run(c) {
      const { sources: rows, directory: d } = await withAgent(c, (a) => ranked(a, c.log));
      const adopted = d.adopted;
      const directory = adopted
        ? {
            version: adopted.directory.version,
            depots: adopted.directory.depots.length,
            generation: adopted.generation,
            source: adopted.source,
            refreshedFrom: d.source ?? null,
          }
        : null;
      const head = adopted
        ? `signed depot directory v${adopted.directory.version} (${adopted.directory.depots.length} depot(s), generation ${adopted.generation}, ${d.source ? `refreshed from ${d.source}` : 'not refreshed: every source failed'})`
        : `no signed depot directory yet${d.source ? '' : ' (every source failed)'}`;
      return {
        json: { sources: rows, directory, directoryFailures: d.failures },
        human: [
          head,
          ...rows.map(
            (s) => `${String(s.rank).padStart(2)}. ${s.name.padEnd(16)} ${s.url}  ${s.reasons.join('; ')}`,
          ),
        ].join('\n'),
      };
    },
  },
];
