import { execFileSync } from 'node:child_process';
import { win32 } from 'node:path';
import { optionalString, requireString } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';
import { DepotsyncError } from '../src/errors.js';

/** Name of the Windows service `service install` registers (docs/windows-agent.md). */
export const SERVICE_NAME = 'depotsync-agent';

export interface ServicePlan {
  name: string;
  /** The command lines of `sc.exe`, in order, each an argument list. */
  steps: string[][];
}

/** Quotes one argument of a Windows command line the way CommandLineToArgvW reads it back. */
export function quoteWindowsArg(a: string): string {
  if (a !== '' && !/[\s"]/.test(a)) return a;
  return `"${a.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}

/**
 * What `service install` asks of `sc.exe`: an automatic service running `EXE service run --dir A` as
 * LocalSystem, restarted by the service manager 1 minute after each failure (the failure count resets
 * after a day), and a description. `sc.exe` wants `option= value` as two arguments.
 */
export function installPlan(
  exe: string,
  dir: string,
  name = SERVICE_NAME,
  selfPackage?: string,
): ServicePlan {
  if (!win32.isAbsolute(exe) || !win32.isAbsolute(dir))
    throw new DepotsyncError('usage', 'service install: the executable and --dir must be full paths', {
      hint: 'give --dir as a full path such as C:\\ProgramData\\depotsync\\agent',
    });
  const args = [exe, 'service', 'run', '--dir', dir, ...(selfPackage ? ['--package', selfPackage] : [])];
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

function runPlan(plan: ServicePlan, tolerateFirst: boolean): string[] {
  if (process.platform !== 'win32')
    throw new DepotsyncError('usage', 'service install/uninstall registers a Windows service', {
      hint: 'on Linux, run the agent from a systemd timer or unit (docs/windows-agent.md)',
    });
  const done: string[] = [];
  plan.steps.forEach((args, i) => {
    try {
      execFileSync(scExe(), args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
      done.push(args[0] as string);
    } catch (e) {
      // `sc stop` of a service that is not running fails; deleting it still works.
      if (tolerateFirst && i === 0) return;
      const out = String((e as { stdout?: Buffer }).stdout ?? '')
        .trim()
        .replace(/\s+/g, ' ');
      throw new DepotsyncError(
        'io',
        `sc.exe ${args[0]} ${plan.name} failed: ${out || (e as Error).message}`,
        {
          hint: 'run it from an elevated prompt (as an administrator)',
          cause: e,
        },
      );
    }
  });
  return done;
}

const dirOption = { dir: { type: 'string' as const } };

/** `service install|uninstall|run`: the agent as a Windows service (docs/windows-agent.md). */
export const serviceCommands: Command[] = [
  {
    path: ['agent', 'service', 'install'],
    usage: 'agent service install --dir A [--name N] [--package NAME]',
    summary: 'register the agent as a Windows service (sc.exe; automatic start, restart on failure)',
    options: { ...dirOption, name: { type: 'string' }, package: { type: 'string' } },
    async run(c) {
      const plan = installPlan(
        process.execPath,
        requireString(c.values, 'dir', 'service install'),
        optionalString(c.values, 'name'),
        optionalString(c.values, 'package'),
      );
      const done = runPlan(plan, false);
      return {
        json: { service: plan.name, done },
        human: `service ${plan.name} installed (${done.join(', ')})`,
      };
    },
  },
  {
    path: ['agent', 'service', 'uninstall'],
    usage: 'agent service uninstall [--name N]',
    summary: 'stop and remove the Windows service',
    options: { name: { type: 'string' } },
    async run(c) {
      const plan = uninstallPlan(optionalString(c.values, 'name'));
      const done = runPlan(plan, true);
      return { json: { service: plan.name, done }, human: `service ${plan.name} removed` };
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
      const stop = new AbortController();
      for (const s of ['SIGINT', 'SIGTERM', 'SIGBREAK'] as const) process.once(s, () => stop.abort());
      while (!stop.signal.aborted) {
        try {
          await renewAgentIfDue(dir, c.log);
          c.log.info({ dir }, 'agent service: checked');
        } catch (e) {
          // A failed round is logged and tried again next time; the service stays up.
          c.log.warn({ err: e }, 'agent service: round failed');
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, seconds * 1000);
          stop.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
        });
      }
      return { json: { stopped: true }, human: 'agent service stopped' };
    },
  },
];
