import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { win32 } from 'node:path';
import { optionalString, requireString } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';
import { DepotsyncError } from '../src/errors.js';
import { quoteWindowsArg } from './exec.js';

/** Name of the Windows service `service install` registers (docs/windows-agent.md). */
export const SERVICE_NAME = 'depotsync-agent';

export interface ServicePlan {
  name: string;
  /** The command lines of `sc.exe`, in order, each an argument list. */
  steps: string[][];
}

export { quoteWindowsArg };

/** The service host beside the agent executable (agent/windows/service-host.c, docs/windows-agent.md). */
export const HOST_EXE = 'depotsync-agent-service.exe';

export interface InstallOptions {
  name?: string;
  /** The self-check package (`service run --package`). */
  selfPackage?: string;
  /** The service host; default: HOST_EXE beside the agent executable. */
  host?: string;
  /** `%ProgramData%`: where the host's log and stop file go, in its `depotsync` folder. */
  programData?: string;
  /** Seconds between the agent's rounds (`service run --interval`). */
  interval?: string;
}

/**
 * What `service install` asks of `sc.exe`: an automatic service running the service host as LocalSystem,
 * the host running `EXE service run --dir A` as its child (Node.js cannot answer the service manager
 * itself), restarted by the service manager 1 minute after each failure of the host (the count resets
 * after a day), and a description. `sc.exe` wants `option= value` as two arguments.
 */
export function installPlan(exe: string, dir: string, o: InstallOptions = {}): ServicePlan {
  const name = o.name ?? SERVICE_NAME;
  const host = o.host ?? win32.join(win32.dirname(exe), HOST_EXE);
  if (!win32.isAbsolute(exe) || !win32.isAbsolute(dir) || !win32.isAbsolute(host))
    throw new DepotsyncError('usage', 'service install: the executables and --dir must be full paths', {
      hint: 'give --dir as a full path such as C:\\ProgramData\\depotsync\\agent',
    });
  if (!/^[A-Za-z0-9_.-]{1,80}$/.test(name))
    throw new DepotsyncError(
      'usage',
      `service install: --name ${JSON.stringify(name)} is not a service name`,
      {
        hint: 'letters, digits, dot, dash and underscore, at most 80',
      },
    );
  const base = win32.join(o.programData ?? 'C:\\ProgramData', 'depotsync', name);
  const agentArgs = [
    'service',
    'run',
    '--dir',
    dir,
    ...(o.interval ? ['--interval', o.interval] : []),
    ...(o.selfPackage ? ['--package', o.selfPackage] : []),
  ];
  const args = [
    host,
    '--agent',
    exe,
    '--log',
    `${base}.log`,
    '--stop-file',
    `${base}.stop`,
    '--',
    ...agentArgs,
  ];
  const binPath = args.map(quoteWindowsArg).join(' ');
  return {
    name,
    steps: [
      [
        'create',
        name,
        'binPath=',
        binPath,
        'start=',
        'auto',
        'obj=',
        'LocalSystem',
        'DisplayName=',
        'depotsync agent',
      ],
      ['description', name, 'Fetches and verifies signed packages for this computer (depotsync agent)'],
      ['failure', name, 'reset=', '86400', 'actions=', 'restart/60000/restart/60000/restart/60000'],
    ],
  };
}

export function uninstallPlan(name = SERVICE_NAME): ServicePlan {
  return {
    name,
    steps: [
      ['stop', name],
      ['delete', name],
    ],
  };
}

function scExe(): string {
  return win32.join(process.env.SystemRoot ?? process.env.windir ?? 'C:\\Windows', 'System32', 'sc.exe');
}

function onWindows(what: string): void {
  if (process.platform !== 'win32')
    throw new DepotsyncError('usage', `service ${what}: Windows services only`, {
      hint: 'on Linux, run the agent from a systemd timer or unit (docs/windows-agent.md)',
    });
}

/** One `sc.exe` call: its output, and whether it succeeded (sc.exe sets a non-zero exit code on failure). */
function sc(args: string[]): { ok: boolean; out: string; error?: unknown } {
  try {
    const out = execFileSync(scExe(), args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    return { ok: true, out: String(out) };
  } catch (e) {
    return { ok: false, out: String((e as { stdout?: Buffer }).stdout ?? ''), error: e };
  }
}

function runPlan(plan: ServicePlan, tolerateFirst: boolean): string[] {
  const done: string[] = [];
  plan.steps.forEach((args, i) => {
    const r = sc(args);
    if (r.ok) done.push(args[0] as string);
    // `sc stop` of a service that is not running fails; deleting it still works.
    else if (!(tolerateFirst && i === 0)) {
      const out = r.out.trim().replace(/\s+/g, ' ');
      throw new DepotsyncError(
        'io',
        `sc.exe ${args[0]} ${plan.name} failed: ${out || (r.error as Error).message}`,
        {
          hint: 'run it from an elevated prompt (as an administrator)',
          cause: r.error,
        },
      );
    }
  });
  return done;
}

/** The state `sc.exe query` prints (`STATE : 4 RUNNING`), or undefined when the service does not exist. */
export function parseScState(out: string): string | undefined {
  return /STATE\s*:\s*\d+\s+([A-Z_]+)/.exec(out)?.[1];
}

function serviceState(name: string): string | undefined {
  const r = sc(['query', name]);
  return r.ok ? parseScState(r.out) : undefined;
}

/** Waits until the service is STOPPED (the host waits for the agent, up to its stop timeout). */
async function waitStopped(name: string, timeoutMs: number): Promise<string | undefined> {
  const end = Date.now() + timeoutMs;
  let state = serviceState(name);
  while (state !== undefined && state !== 'STOPPED' && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 500));
    state = serviceState(name);
  }
  return state;
}

/**
 * Resolves when the stop file the service host names in DEPOTSYNC_STOP_FILE appears (the host's way of
 * asking the agent to end: a service's child has no console to receive a Ctrl event), or on a signal.
 */
function stopRequested(signal: AbortController): void {
  for (const s of ['SIGINT', 'SIGTERM', 'SIGBREAK'] as const) process.once(s, () => signal.abort());
  const file = process.env.DEPOTSYNC_STOP_FILE;
  if (!file) return;
  const t = setInterval(() => existsSync(file) && signal.abort(), 500);
  t.unref();
  signal.signal.addEventListener('abort', () => clearInterval(t), { once: true });
}

const dirOption = { dir: { type: 'string' as const } };
const nameOption = { name: { type: 'string' as const } };

/** `service install|uninstall|status|run`: the agent as a Windows service (docs/windows-agent.md). */
export const serviceCommands: Command[] = [
  {
    path: ['agent', 'service', 'install'],
    usage: 'agent service install --dir A [--name N] [--package NAME] [--interval SECONDS] [--host EXE]',
    summary:
      'register the agent as a Windows service run by its service host (sc.exe; automatic start, restart on failure)',
    options: {
      ...dirOption,
      ...nameOption,
      package: { type: 'string' },
      interval: { type: 'string' },
      host: { type: 'string' },
    },
    async run(c) {
      onWindows('install');
      const host = optionalString(c.values, 'host') ?? win32.join(win32.dirname(process.execPath), HOST_EXE);
      const plan = installPlan(process.execPath, requireString(c.values, 'dir', 'service install'), {
        name: optionalString(c.values, 'name'),
        selfPackage: optionalString(c.values, 'package'),
        interval: optionalString(c.values, 'interval'),
        host,
        programData: process.env.ProgramData,
      });
      if (!existsSync(host))
        throw new DepotsyncError('not-found', `service install: the service host ${host} is missing`, {
          hint: `copy ${HOST_EXE} from the release folder beside the agent executable, or name it with --host`,
        });
      mkdirSync(win32.join(process.env.ProgramData ?? 'C:\\ProgramData', 'depotsync'), { recursive: true });
      const done = runPlan(plan, false);
      return {
        json: { service: plan.name, done },
        human: `service ${plan.name} installed (${done.join(', ')}); start it with: sc.exe start ${plan.name}`,
      };
    },
  },
  {
    path: ['agent', 'service', 'uninstall'],
    usage: 'agent service uninstall [--name N]',
    summary: 'stop the Windows service (waiting for the agent to end) and remove it',
    options: nameOption,
    async run(c) {
      onWindows('uninstall');
      const plan = uninstallPlan(optionalString(c.values, 'name'));
      const stopped = sc(plan.steps[0] as string[]).ok;
      const state = await waitStopped(plan.name, 40_000);
      if (state !== undefined && state !== 'STOPPED')
        throw new DepotsyncError('timeout', `service ${plan.name} is still ${state} after 40 s`, {
          hint: `see the service host's log under %ProgramData%\\depotsync, then: sc.exe stop ${plan.name}`,
        });
      const done = [...(stopped ? ['stop'] : []), ...runPlan({ ...plan, steps: plan.steps.slice(1) }, false)];
      return { json: { service: plan.name, done }, human: `service ${plan.name} removed` };
    },
  },
  {
    path: ['agent', 'service', 'status'],
    usage: 'agent service status [--name N]',
    summary: 'the state of the Windows service (RUNNING, STOPPED ...; exit code 1 when it is not installed)',
    options: nameOption,
    async run(c) {
      onWindows('status');
      const name = optionalString(c.values, 'name') ?? SERVICE_NAME;
      const state = serviceState(name);
      if (state === undefined)
        throw new DepotsyncError('not-found', `service ${name} is not installed`, {
          hint: 'install it with: depotsync-agent.exe service install --dir C:\\ProgramData\\depotsync\\agent',
        });
      return { json: { service: name, state }, human: `service ${name}: ${state}` };
    },
  },
  {
    path: ['agent', 'service', 'run'],
    usage: 'agent service run --dir A [--interval SECONDS] [--package NAME]',
    summary:
      'what the service runs: renew the machine certificate when due and refresh the signed depot directory, every interval',
    options: { ...dirOption, interval: { type: 'string' }, package: { type: 'string' } },
    logLevel: 'info',
    async run(c) {
      const dir = requireString(c.values, 'dir', 'service run');
      const seconds = Number(optionalString(c.values, 'interval') ?? '3600');
      if (!Number.isInteger(seconds) || seconds < 10 || seconds > 86_400)
        throw new DepotsyncError(
          'usage',
          `service run: --interval ${seconds} is not a whole number of seconds from 10 to 86400`,
        );
      // Installed through the channel: an executable altered since its release does not start.
      if (optionalString(c.values, 'package'))
        await (await import('./self-check.js')).selfCheckCommand.run(c);
      const { renewAgentIfDue } = await import('./renew.js');
      const { ranked, withAgent } = await import('./commands.js');
      const stop = new AbortController();
      stopRequested(stop);
      c.log.info({ dir, interval: seconds }, 'agent service: started');
      while (!stop.signal.aborted) {
        try {
          await renewAgentIfDue(dir, c.log);
          // The signed depot directory refreshed and the sources probed: the next fetch starts ranked.
          const r = await withAgent(c, (a) => ranked(a, c.log));
          c.log.info(
            {
              dir,
              directoryVersion: r.directory.adopted?.directory.version ?? null,
              sources: r.sources.map((s) => ({ url: s.url, rttMs: s.rttMs })),
            },
            'agent service: checked',
          );
        } catch (e) {
          // A failed round is logged and tried again next time; the service stays up.
          c.log.warn({ err: e }, 'agent service: round failed');
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, seconds * 1000);
          stop.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
        });
      }
      c.log.info({ dir }, 'agent service: stopped');
      return { json: { stopped: true }, human: 'agent service stopped' };
    },
  },
];
