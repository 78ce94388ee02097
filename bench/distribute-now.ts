/**
 * "Distribute now" benchmark: seconds from `depotsync master publish` returning (the new
 * generation is committed) to a depot SERVING it (its /healthz reports the generation), with real
 * processes on loopback, for three ways of getting there, measured in the same run:
 *  1. distribute now: the depot's event stream to the master, sync interval one hour;
 *  2. the peer: interval polling as depots (and tools like cron + rsync) do it without a push channel,
 *     notify.enabled false and an interval of BENCH_POLL_MS (default 10 s, no jitter);
 *  3. the floor: an operator running `depotsync depot sync` right after the publish (a process start
 *     plus the sync itself), on a third depot.
 * Each publish is a BENCH_BYTES package with scattered 4 KiB edits (a small delta), BENCH_ROUNDS times,
 * each at a random phase of the polling depot's interval.
 *
 *   npx tsc -p tsconfig.json && BENCH_ROUNDS=5 node dist/bench/distribute-now.js
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoBytes, scatterEdits } from '../cli/demo/demo.js';
import { freePort, runJson, startService, waitForHttps, type Service } from '../cli/demo/processes.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BYTES = Number(process.env.BENCH_BYTES ?? 4 * 1024 * 1024);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 10_000);

function healthGeneration(url: string): Promise<number | null> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/healthz`, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve(
            (JSON.parse(Buffer.concat(parts).toString('utf8')) as { generation: number | null }).generation,
          );
        } catch {
          resolve(null);
        }
      });
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

/** Resolves with the time (performance.now) at which `url` first serves generation `g`. */
async function servedAt(url: string, g: number, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if ((await healthGeneration(url)) === g) return performance.now();
    if (performance.now() > deadline)
      throw new Error(`${url} did not serve generation ${g} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function configure(
  depotDir: string,
  schedule: Record<string, unknown>,
  notify: Record<string, unknown>,
): void {
  const path = join(depotDir, 'depot.json');
  const c = JSON.parse(readFileSync(path, 'utf8'));
  c.schedule = { ...c.schedule, ...schedule };
  c.notify = { ...c.notify, ...notify };
  writeFileSync(path, JSON.stringify(c, null, 2));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(2);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-bench-notify-'));
  const services: Service[] = [];
  try {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    let data = demoBytes(BYTES);
    writeFileSync(join(dir, 'v0.bin'), data);
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '0', join(dir, 'v0.bin')]);
    const mp = await freePort();
    const masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    const depot = async (
      name: string,
      schedule: Record<string, unknown>,
      notify: Record<string, unknown>,
      serve: boolean,
    ) => {
      const D = join(dir, name);
      const port = await freePort();
      const token = runJson(['master', 'token', '--dir', M, '--role', 'depot']).token as string;
      runJson([
        'depot',
        'init',
        '--dir',
        D,
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--token',
        token,
        '--name',
        name,
        '--listen',
        `127.0.0.1:${port}`,
      ]);
      configure(D, schedule, notify);
      runJson(['depot', 'sync', '--dir', D]);
      const url = `https://127.0.0.1:${port}`;
      if (serve) {
        services.push(startService(name, ['depot', 'serve', '--dir', D]));
        await waitForHttps(url);
      }
      return { D, url };
    };
    const pushed = await depot('depot-push', { intervalMs: 3_600_000, jitterMs: 0 }, { enabled: true }, true);
    const polled = await depot('depot-poll', { intervalMs: POLL_MS, jitterMs: 0 }, { enabled: false }, true);
    const manual = await depot(
      'depot-manual',
      { intervalMs: 3_600_000, jitterMs: 0 },
      { enabled: false },
      false,
    );

    const rows = {
      push: [] as number[],
      poll: [] as number[],
      manual: [] as number[],
      publish: [] as number[],
    };
    for (let round = 1; round <= ROUNDS; round++) {
      data = scatterEdits(data, 10, 4096);
      const file = join(dir, `v${round}.bin`);
      writeFileSync(file, data);
      // Publish at a random phase of the polling depot's interval, so its figure is a fair sample.
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * POLL_MS)));
      const t0 = performance.now();
      const g = runJson([
        'master',
        'publish',
        '--dir',
        M,
        '--name',
        'setup',
        '--version',
        String(round),
        file,
      ]).generation as number;
      const published = performance.now();
      rows.publish.push(published - t0);
      const [push, poll] = await Promise.all([
        servedAt(pushed.url, g, 60_000),
        servedAt(polled.url, g, POLL_MS * 3 + 60_000),
      ]);
      rows.push.push(push - published);
      rows.poll.push(poll - published);
      // The floor, measured after the others so it does not compete with them for the 2 cores.
      const m0 = performance.now();
      const r = spawnSync(
        process.execPath,
        [join(process.cwd(), 'bin', 'depotsync.js'), 'depot', 'sync', '--dir', manual.D, '--json'],
        { encoding: 'utf8', env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' } },
      );
      if (r.status !== 0) throw new Error(`depot sync failed: ${r.stderr}`);
      rows.manual.push(performance.now() - m0);
      process.stderr.write(
        `round ${round}/${ROUNDS}: generation ${g}: push ${sec(push - published)} s, poll ${sec(poll - published)} s\n`,
      );
    }

    const line = (what: string, xs: number[]) =>
      `| ${what} | ${sec(median(xs))} | ${sec(Math.min(...xs))} | ${sec(Math.max(...xs))} |`;
    process.stdout.write(
      [
        `publish → depot serving it: ${ROUNDS} publishes of a ${(BYTES / 1048576).toFixed(0)} MiB package with 10 scattered 4 KiB edits (seconds after \`master publish\` returned; median ${sec(median(rows.publish))} s for the publish itself)`,
        '',
        '| path to the depot | median s | min s | max s |',
        '|---|---|---|---|',
        line('distribute now: event stream, interval 1 h', rows.push),
        line(`peer: interval polling every ${POLL_MS / 1000} s, no push`, rows.poll),
        line('floor: `depot sync` run by hand right after the publish', rows.manual),
        '',
      ].join('\n'),
    );
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`distribute-now bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
