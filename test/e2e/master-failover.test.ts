import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runJson, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { CLI } from '../helpers/cli.js';
import { startPostgres, type PgCluster } from '../helpers/postgres.js';

/** `depotsync ARGS --json` in a child process, without blocking this event loop (polls keep running). */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args, '--json'], {
      env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      step(`${args.slice(0, 3).join(' ')} -> ${status} ${stderr.trim().split('\n').pop() ?? ''}`);
      resolve({ status, stdout, stderr });
    });
  });
}

const started = Date.now();
const step = (what: string) => {
  if (process.env.FAILOVER_TRACE) console.log(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Master {
  name: string;
  dir: string;
  port: number;
  url: string;
  service?: Service;
  log: string[];
}

/**
 * The drill (docs/operations.md, "Several masters"): two `master serve` processes on one throw-away
 * PostgreSQL and one shared folder; the signer is killed with SIGKILL in the middle of a publish, the
 * other takes over and signs; PostgreSQL is restarted; a paused signer commits nothing; a depot syncs
 * and an agent fetches through the surviving master. FAILOVER_RUNS=N repeats the kill N times and
 * prints each failover time (bench/README.md).
 */
describe('several masters on one PostgreSQL: failover drill (real processes)', () => {
  let cluster: PgCluster;
  let root: string;
  let dbName: string;
  const masters: Master[] = [];
  const others: Service[] = [];
  const runs = Number(process.env.FAILOVER_RUNS ?? 1);

  beforeAll(async () => {
    cluster = await startPostgres();
    root = mkdtempSync(join(tmpdir(), 'depotsync-failover-'));
  });
  afterAll(async () => {
    await Promise.all([...masters.map((m) => m.service?.stop()), ...others.map((s) => s.stop())]);
    await cluster?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  const q = async <T>(sql: string): Promise<T[]> => (await cluster.query(sql, dbName)).rows as T[];
  const holder = async () =>
    (
      await q<{ holder: string | null; epoch: string }>('SELECT holder, epoch FROM signer_lease WHERE id = 1')
    )[0];

  function serve(m: Master): void {
    m.service = startService(m.name, ['master', 'serve', '--dir', m.dir, '--listen', `127.0.0.1:${m.port}`], {
      env: { DEPOTSYNC_LOG_LEVEL: 'info' },
      log: (l) => m.log.push(l),
    });
  }

  async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
    const t0 = Date.now();
    while (!(await cond())) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
    return Date.now() - t0;
  }

  /** The generation sequence is 1..N without gaps, and the newest snapshot and timestamp name N. */
  async function checkCatalog(): Promise<number> {
    const gens = (
      await q<{ generation: string }>('SELECT generation FROM generations ORDER BY generation')
    ).map((r) => Number(r.generation));
    expect(gens).toEqual(gens.map((_, i) => i + 1));
    const n = gens.length;
    const [snap] = await q<{ generation: string }>(
      "SELECT generation FROM metadata_files WHERE role = 'snapshot' ORDER BY version DESC LIMIT 1",
    );
    const [ts] = await q<{ generation: string }>(
      "SELECT generation FROM metadata_files WHERE role = 'timestamp' ORDER BY version DESC LIMIT 1",
    );
    expect(Number(snap!.generation)).toBe(n);
    expect(Number(ts!.generation)).toBe(n);
    return n;
  }

  const timestampVersion = async () =>
    Number(
      (
        await q<{ version: string }>(
          "SELECT max(version) AS version FROM metadata_files WHERE role = 'timestamp'",
        )
      )[0]!.version,
    );

  let published = 0;
  /** Publish a small new version through master `m`'s folder; retried while refused (another signs). */
  async function publishVia(m: Master, timeoutMs = 30_000): Promise<{ ms: number; refusals: string[] }> {
    const file = join(root, `small-${++published}.bin`);
    writeFileSync(file, Buffer.alloc(10_000 + published, published % 251));
    const refusals: string[] = [];
    const ms = await until(
      `a publish through ${m.name}`,
      async () => {
        const r = await cli([
          'master',
          'publish',
          '--dir',
          m.dir,
          '--name',
          'small',
          '--version',
          `${published}`,
          file,
        ]);
        if (r.status === 0) return true;
        refusals.push(r.stderr.trim().split('\n').pop() ?? '');
        await sleep(200);
        return false;
      },
      timeoutMs,
    );
    return { ms, refusals };
  }

  it('fails over within seconds, fences a paused signer, survives a PostgreSQL restart', async () => {
    const url = await cluster.createDatabase('drill');
    dbName = new URL(url).pathname.slice(1);
    const M1 = join(root, 'm1');
    const fp = runJson(['master', 'init', '--dir', M1, '--name', 'm1']).fingerprint as string;
    step("runJson(['master', 'migrate'");
    runJson(['master', 'migrate', '--dir', M1, '--to', url]);
    // The shared folder: M1's content moves there; both masters name it.
    const shared = join(root, 'shared');
    const config = JSON.parse(readFileSync(join(M1, 'master.json'), 'utf8'));
    writeFileSync(join(M1, 'master.json'), JSON.stringify({ ...config, sharedDir: shared }, null, 2));
    mkdirSync(shared);
    for (const part of ['store', 'revocations.json']) renameSync(join(M1, part), join(shared, part));
    const M2 = join(root, 'm2');
    step('const joined = ');
    const joined = runJson(['master', 'join', '--dir', M2, '--from', M1, '--name', 'm2']);
    expect(joined.sharedDir).toBe(shared);
    expect(joined.copied).toEqual(expect.arrayContaining(['keys', 'ca']));

    for (const [name, dir] of [
      ['m1', M1],
      ['m2', M2],
    ] as const) {
      const port = await freePort();
      masters.push({ name, dir, port, url: `https://127.0.0.1:${port}`, log: [] });
    }
    const [m1, m2] = masters as [Master, Master];
    step('serve(m1);');
    serve(m1);
    await waitForHttps(m1.url);
    await until('m1 signs', async () => (await holder())?.holder === 'm1');
    step('serve(m2);');
    serve(m2);
    await waitForHttps(m2.url);
    step('await publishVia(m1);');
    await publishVia(m1);
    // The non-signer refuses cleanly, naming the signer.
    const refused = await cli([
      'master',
      'publish',
      '--dir',
      M2,
      '--name',
      'other',
      '--version',
      '1',
      join(root, 'small-1.bin'),
    ]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/master m2 is not the signer: master m1 signs now/);
    await checkCatalog();

    // A depot enrolled at the master that does not sign: every master serves enrollment and metadata.
    const depotPort = await freePort();
    const depotUrl = `https://127.0.0.1:${depotPort}`;
    const D = join(root, 'depot');
    step('const depotToken');
    const depotToken = runJson(['master', 'token', '--dir', M2, '--role', 'depot']).token as string;
    runJson([
      'depot',
      'init',
      '--dir',
      D,
      // Both masters, the first signer first: the depot fails over when it is gone.
      '--master',
      m1.url,
      '--master',
      m2.url,
      '--fingerprint',
      fp,
      '--token',
      depotToken,
      '--name',
      'depot',
      '--listen',
      `127.0.0.1:${depotPort}`,
    ]);

    // Kill -9 the signer in the middle of a big publish through it, `runs` times (the killed one comes back).
    step('const failovers');
    const failovers: { gainMs: number; timestampMs: number }[] = [];
    for (let i = 0; i < runs; i++) {
      const signerName = (await holder())!.holder;
      const signer = masters.find((m) => m.name === signerName)!;
      const survivor = masters.find((m) => m !== signer)!;
      const big = join(root, `big-${i}.bin`);
      writeFileSync(big, Buffer.alloc(64 * 1024 * 1024, i + 1).fill(i + 7, 0, 1 << 20));
      const before = await timestampVersion();
      const inFlight = spawn(process.execPath, [
        CLI,
        'master',
        'publish',
        '--dir',
        signer.dir,
        '--name',
        'big',
        '--version',
        `${i}`,
        big,
      ]);
      await sleep(700);
      const t0 = Date.now();
      step("signer.service!.child.kill('SI");
      signer.service!.child.kill('SIGKILL');
      inFlight.kill('SIGKILL');
      let gainMs = 0;
      const gained = until(
        `${survivor.name} takes the lease`,
        async () => (await holder())?.holder === survivor.name,
      ).then(() => (gainMs = Date.now() - t0));
      const { refusals } = await publishVia(survivor);
      const timestampMs = await until(
        'a newer timestamp',
        async () => (await timestampVersion()) > before,
      ).then(() => Date.now() - t0);
      await gained;
      failovers.push({ gainMs, timestampMs });
      for (const r of refusals) expect(r).toMatch(/not the signer|being taken over/);
      await checkCatalog();
      // The killed master comes back as a server that does not sign.
      const child = signer.service!.child;
      if (child.exitCode === null && child.signalCode === null)
        await new Promise((r) => child.once('exit', r));
      serve(signer);
      await waitForHttps(signer.url);
    }
    console.log(
      `failover (kill -9 of the signer -> lease taken / next timestamp signed by the survivor), ms: ${failovers
        .map((f) => `${f.gainMs}/${f.timestampMs}`)
        .join(', ')}`,
    );
    for (const f of failovers) expect(f.timestampMs).toBeLessThan(10_000 + 5_000);

    // PostgreSQL restarted under both masters: errors in their logs, then everything goes on.
    const signerName = (await holder())!.holder!;
    const signer = masters.find((m) => m.name === signerName)!;
    step('await cluster.restart();');
    await cluster.restart();
    await publishVia(signer);
    await checkCatalog();

    // A paused signer (SIGSTOP past its lease, then SIGCONT) commits nothing: the other signs meanwhile.
    const paused = signer;
    const other = masters.find((m) => m !== paused)!;
    const pid = paused.service!.child.pid!;
    step("process.kill(pid, 'SIGSTOP');");
    process.kill(pid, 'SIGSTOP');
    try {
      await until(
        `${other.name} takes the lease from the paused signer`,
        async () => (await holder())?.holder === other.name,
      );
      await publishVia(other);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await until(
      `${paused.name} notices it lost the lease`,
      async () => paused.log.some((l) => l.includes('signer lease lost')),
      15_000,
    );
    const afterPause = await checkCatalog();
    const refusedAfter = await cli([
      'master',
      'publish',
      '--dir',
      paused.dir,
      '--name',
      'small',
      '--version',
      '999',
      join(root, 'small-1.bin'),
    ]);
    expect(refusedAfter.status).not.toBe(0);
    expect(refusedAfter.stderr).toMatch(new RegExp(`master ${other.name} signs now`));
    expect(await checkCatalog()).toBe(afterPause);

    // An agent with both master URLs; then m1 (first in every list) is killed: the depot syncs and the
    // agent fetches through m2.
    const A = join(root, 'agent');
    const agentToken = runJson(['master', 'token', '--dir', other.dir, '--role', 'agent']).token as string;
    runJson([
      'agent',
      'init',
      '--dir',
      A,
      '--name',
      'agent',
      '--master',
      m1.url,
      '--master',
      m2.url,
      '--fingerprint',
      fp,
      '--token',
      agentToken,
      '--depot',
      `depot=${depotUrl}`,
    ]);
    m1.service!.child.kill('SIGKILL');
    step('const synced');
    const synced = runJson(['depot', 'sync', '--dir', D]);
    expect(synced.generation).toBe(afterPause);
    others.push(startService('depot', ['depot', 'serve', '--dir', D]));
    await waitForHttps(depotUrl);
    const out = join(root, 'fetched.bin');
    step('const fetched');
    const fetched = await until('the agent fetches', async () => {
      const r = await cli(['agent', 'fetch', '--dir', A, 'small', '--out', out]);
      return r.status === 0;
    });
    expect(fetched).toBeLessThan(30_000);
    expect(readFileSync(out).length).toBeGreaterThan(10_000);
    // Clear errors in the log while PostgreSQL was away (no stack traces as the only message).
    const dbErrors = masters.flatMap((m) => m.log).filter((l) => /not reachable|PostgreSQL/i.test(l));
    console.log(
      `master log lines about the database restart: ${dbErrors.length}\n${dbErrors.slice(0, 3).join('\n')}`,
    );
  }, 300_000);
});
