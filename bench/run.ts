/**
 * Run benchmarks one after another (each prints its own comparison table):
 *   npm run bench                 # all
 *   npm run bench -- hash chunk   # only these
 * Peer tools (b3sum, rsync, nginx, curl) are installed by scripts/bench-deps.sh.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.js') && f !== 'run.js')
  .map((f) => f.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2);
const names = wanted.length ? wanted : all;
let failed = 0;
for (const name of names) {
  const file = `${dir}${name}.js`;
  if (!existsSync(file)) {
    process.stderr.write(`bench: no benchmark named ${name} (have: ${all.join(', ')})\n`);
    failed++;
    continue;
  }
  process.stdout.write(`\n## ${name}\n\n`);
  const r = spawnSync(process.execPath, [file], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
