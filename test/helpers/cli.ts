import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../bin/depotsync.js', import.meta.url));

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  json: any;
}

/** Run the built `depotsync` CLI (npm test compiles dist/ first) and parse --json output. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn', ...opts.env },
    ...(opts.input === undefined ? {} : { input: opts.input }),
    timeout: 120_000,
  });
  let json: any;
  if (args.includes('--json')) {
    try {
      json = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
    } catch {
      json = undefined;
    }
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}
