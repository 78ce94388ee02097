import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = join(ROOT, 'scripts', 'package-agent.mjs');
export const CACHE = join(ROOT, '.cache', 'package-agent');

export interface AgentBuild {
  dir: string;
  linux: string;
  windows: string;
  /** The Windows service host (agent/windows/service-host.c). */
  host: string;
  info: {
    node: string;
    nativeStubs: string[];
    files: Record<string, { bytes: number; sha256: string }>;
  };
  /** Native addons the agent's module graph still imports: stubbed in the executables (they fail when used). */
  pendingNative: string[];
}

function walk(dir: string, out: string[]): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (/\.(ts|mjs|js|json|c)$/.test(e.name)) out.push(p);
  }
}

/** What the executables are made of: the agent's sources, the script and the locked dependencies. */
export function inputsHash(): string {
  const files: string[] = [SCRIPT, join(ROOT, 'package.json'), join(ROOT, 'package-lock.json')];
  for (const d of ['src', 'agent', 'cli']) walk(join(ROOT, d), files);
  const h = createHash('sha256');
  for (const f of files.sort()) h.update(relative(ROOT, f)).update('\0').update(readFileSync(f)).update('\0');
  return h.digest('hex').slice(0, 16);
}

/**
 * Both executables, built by `scripts/package-agent.mjs` into a folder named after the inputs' hash
 * and reused while the inputs stay the same (a build takes about a minute on this machine).
 */
export function agentBuild(): AgentBuild {
  const dir = join(CACHE, 'builds', inputsHash());
  const infoFile = join(dir, 'build-info.json');
  if (!existsSync(infoFile)) {
    execFileSync(process.execPath, [SCRIPT, '--out', dir, '--cache', CACHE], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 300_000,
    });
  }
  const info = JSON.parse(readFileSync(infoFile, 'utf8')) as AgentBuild['info'];
  const linux = join(dir, 'depotsync-agent-linux-x64');
  const windows = join(dir, 'depotsync-agent-win-x64.exe');
  const host = join(dir, 'depotsync-agent-service.exe');
  for (const f of [linux, windows, host]) if (!statSync(f).isFile()) throw new Error(`${f} missing`);
  return { dir, linux, windows, host, info, pendingNative: info.nativeStubs };
}

/**
 * Rebuild one target into `out` (the determinism check), in a child process the caller need not wait
 * for at once: it can run while the master and depot start.
 */
export function rebuild(target: 'linux-x64' | 'win-x64', out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [SCRIPT, '--out', out, '--cache', CACHE, '--target', target],
      { timeout: 300_000 },
      (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()),
    );
  });
}
