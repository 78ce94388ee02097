import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DepotsyncError } from '../../src/errors.js';

/**
 * bin/depotsync.js of this checkout, found by walking up from this module: it runs from dist/cli/demo
 * (the built CLI) and from cli/demo (vitest runs the TypeScript sources).
 */
const CLI = findCli();

function findCli(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'bin', 'depotsync.js');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    dir = dirname(dir);
  }
  throw new DepotsyncError('internal', 'demo: cannot find bin/depotsync.js above this module');
}

/** Run `depotsync ARGS --json` to completion and return its JSON object (or a clear error). */
export function runJson(args: string[], env: NodeJS.ProcessEnv = {}): any {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn', ...env },
    timeout: 600_000,
  });
  if (r.status !== 0) {
    throw new DepotsyncError(
      'internal',
      `depotsync ${args.slice(0, 2).join(' ')} failed (exit ${r.status}): ${r.stderr.trim().split('\n').pop() ?? ''}`,
    );
  }
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
}

/** A long-running `depotsync … serve` child, stopped with SIGTERM. */
export interface Service {
  name: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export function startService(
  name: string,
  args: string[],
  opts: { log?: (line: string) => void; env?: NodeJS.ProcessEnv } = {},
): Service {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: process.env.DEPOTSYNC_LOG_LEVEL ?? 'warn', ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    for (const line of d.split('\n')) if (line.trim()) opts.log?.(`[${name}] ${line}`);
  });
  return {
    name,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Wait until GET /healthz answers on an HTTPS port (any status: TLS is up). */
export async function waitForHttps(url: string, timeoutMs = 20_000): Promise<void> {
  const https = await import('node:https');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = https.get(`${url}/healthz`, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => {
        req.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new DepotsyncError('timeout', `${url} did not start within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Mint a one-time depot token on the master at `master` (a directory) and run `depot init` with it;
 * returns the parsed JSON of `depot init`. `args` follow the standard flags; `env` goes to both runs.
 */
export function enrollDepot(o: {
  master: string;
  masterUrl: string;
  fingerprint: string;
  dir: string;
  name: string;
  port: number;
  parent?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}): any {
  const token = runJson(['master', 'token', '--dir', o.master, '--role', 'depot'], o.env).token as string;
  return runJson(
    [
      'depot',
      'init',
      '--dir',
      o.dir,
      '--master',
      o.masterUrl,
      '--fingerprint',
      o.fingerprint,
      '--token',
      token,
      '--name',
      o.name,
      '--listen',
      `127.0.0.1:${o.port}`,
      ...(o.parent ? ['--parent', o.parent] : []),
      ...(o.args ?? []),
    ],
    o.env,
  );
}
