import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoBytes } from '../../cli/demo/demo.js';
import { freePort, runJson, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { runCli } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';

/**
 * A TLS-passthrough TCP proxy in its own process (the CLI runs synchronously here, so an in-process
 * proxy would never get a turn): bytes both ways between 127.0.0.1:listen and 127.0.0.1:target, one
 * stdout line per connection. TLS stays end to end: the machine sees the master's own certificate.
 */
interface Passthrough {
  url: string;
  /** Connections so far (after a turn of the event loop, for the lines the synchronous CLI runs left). */
  connections(): Promise<number>;
  stop(): Promise<void>;
}

const PASSTHROUGH = `
const net = require('node:net');
const [listen, target] = process.argv.slice(1).map(Number);
const server = net.createServer((client) => {
  process.stdout.write('conn\\n');
  const up = net.connect(target, '127.0.0.1');
  client.pipe(up).pipe(client);
  client.on('error', () => up.destroy());
  up.on('error', () => client.destroy());
});
server.listen(listen, '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

async function startPassthrough(listen: number, target: number): Promise<Passthrough> {
  const child: ChildProcess = spawn(process.execPath, ['-e', PASSTHROUGH, String(listen), String(target)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (out.includes('ready')) resolve();
    });
    child.once('exit', () => reject(new Error('passthrough proxy exited')));
  });
  return {
    url: `https://127.0.0.1:${listen}`,
    connections: async () => {
      await new Promise((r) => setTimeout(r, 100));
      return out.split('\n').filter((l) => l === 'conn').length;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

function depotStatus(D: string): any {
  return runJson(['status', '--dir', D]);
}

function masterView(M: string, depot: string): any {
  return (runJson(['status', '--dir', M]).depots as Array<{ name: string }>).find((d) => d.name === depot);
}

/**
 * Machines follow several masters (docs/operations.md, "Several masters"): a depot and an agent given
 * `--master PROXY --master DIRECT` enroll, sync, report and fetch through the proxy, and go on through
 * the direct URL once the proxy process is killed. Real processes and sockets throughout.
 */
describe('several master URLs: failover (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-masters-e2e-'));
  const M = join(dir, 'master');
  const D = join(dir, 'depot');
  const A = join(dir, 'agent');
  const services: Service[] = [];
  let proxy: Passthrough;
  let direct = '';
  let fp = '';
  let g1 = 0;
  const v1 = demoBytes(2 * 1024 * 1024);
  const v2 = demoBytes(2 * 1024 * 1024 + 333);

  beforeAll(async () => {
    fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    writeFileSync(join(dir, 'v1.bin'), v1);
    g1 = runJson(['master', 'publish', '--dir', M, '--name', 'app', '--version', '1.0', join(dir, 'v1.bin')])
      .generation as number;
    const mp = await freePort();
    direct = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(direct);
    proxy = await startPassthrough(await freePort(), mp);
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('bad --master input: plain http, duplicates (usage errors, nothing created)', () => {
    const token = runJson(['master', 'token', '--dir', M, '--role', 'depot']).token as string;
    const base = ['depot', 'init', '--dir', join(dir, 'bad'), '--fingerprint', fp, '--token', token];
    const http = runCli([...base, '--master', direct, '--master', 'http://127.0.0.1:1']);
    expect(http.status).toBe(2);
    expect(http.stderr).toContain('depot init: --master: "http://127.0.0.1:1" uses plain http://');
    const dup = runCli([...base, '--master', direct, '--master', `${direct}/`]);
    expect(dup.status).toBe(2);
    expect(dup.stderr).toContain(`depot init: --master: "${direct}/" is given twice`);
    const agent = runCli(['agent', 'init', '--dir', join(dir, 'bad-agent'), '--fingerprint', fp]);
    expect(agent.status).toBe(2);
    expect(agent.stderr).toContain('agent init: --master is required');
    const agentDup = runCli([
      'agent',
      'init',
      '--dir',
      join(dir, 'bad-agent'),
      '--fingerprint',
      fp,
      '--master',
      direct,
      '--master',
      direct,
    ]);
    expect(agentDup.status).toBe(2);
    expect(agentDup.stderr).toContain('is given twice');
  });

  it('a depot and an agent enroll, sync, report and fetch through the proxy, then through the direct URL once it is killed', async () => {
    // Enrollment, first sync and status report through the preferred URL (the proxy).
    const token = runJson(['master', 'token', '--dir', M, '--role', 'depot']).token as string;
    const init = runCli([
      'depot',
      'init',
      '--dir',
      D,
      '--master',
      proxy.url,
      '--master',
      direct,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'depot-ha',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--json',
    ]);
    expect(init.status, init.stderr).toBe(0);
    expect(init.json.state).toBe('approved');
    const config = JSON.parse(readFileSync(join(D, 'depot.json'), 'utf8'));
    expect(config).toMatchObject({ masterUrl: proxy.url, masterUrls: [proxy.url, direct] });
    const viaProxy = await proxy.connections();
    expect(viaProxy).toBeGreaterThan(0);

    const s1 = runCli(['depot', 'sync', '--dir', D, '--json']);
    expect(s1.status, s1.stderr).toBe(0);
    expect(s1.json.generation).toBe(g1);
    expect(await proxy.connections()).toBeGreaterThan(viaProxy);
    expect(masterView(M, 'depot-ha')).toMatchObject({ servedGeneration: g1 });
    expect(depotStatus(D).masters).toEqual([proxy.url, direct]);

    // The operator lists the masters in master.json and signs them into the depot directory: the
    // depot learns the one it was not given (after its configured ones).
    const extra = 'https://127.0.0.1:1';
    const mj = join(M, 'master.json');
    writeFileSync(
      mj,
      JSON.stringify({ ...JSON.parse(readFileSync(mj, 'utf8')), masterUrls: [direct, extra] }),
    );
    const signed = runJson(['master', 'directory', 'masters', '--dir', M]);
    expect(signed).toMatchObject({ masterUrls: [direct, extra], changed: true });
    expect(runJson(['master', 'directory', 'masters', '--dir', M]).changed).toBe(false);
    expect(runJson(['depot', 'sync', '--dir', D]).generation).toBe(signed.generation);
    expect(depotStatus(D).masters).toEqual([proxy.url, direct, extra]);

    const agentToken = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    const ai = runCli([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      proxy.url,
      '--master',
      direct,
      '--fingerprint',
      fp,
      '--token',
      agentToken,
      '--name',
      'pc-ha',
      '--json',
    ]);
    expect(ai.status, ai.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(A, 'agent.json'), 'utf8'))).toMatchObject({
      masterUrl: proxy.url,
      masterUrls: [proxy.url, direct],
    });
    const before = await proxy.connections();
    const f1 = runCli(['agent', 'fetch', '--dir', A, 'app@1.0', '--out', join(dir, 'a1.bin'), '--json']);
    expect(f1.status, f1.stderr).toBe(0);
    expect(readFileSync(join(dir, 'a1.bin')).equals(v1)).toBe(true);
    expect(JSON.parse(readFileSync(join(A, 'directory.json'), 'utf8')).directory.masterUrls).toEqual([
      direct,
      extra,
    ]);
    expect(await proxy.connections()).toBeGreaterThan(before);

    // The proxy process dies: the next sync, its status report and the agent's fetch go direct.
    await proxy.stop();
    writeFileSync(join(dir, 'v2.bin'), v2);
    const g2 = runJson([
      'master',
      'publish',
      '--dir',
      M,
      '--name',
      'app',
      '--version',
      '2.0',
      join(dir, 'v2.bin'),
    ]).generation as number;
    const s2 = runCli(['depot', 'sync', '--dir', D, '--json']);
    expect(s2.status, s2.stderr).toBe(0);
    expect(s2.json).toMatchObject({ generation: g2 });
    expect(masterView(M, 'depot-ha')).toMatchObject({ servedGeneration: g2 });
    expect(depotStatus(D)).toMatchObject({ servedGeneration: g2, lastError: null });

    const f2 = runCli(['agent', 'fetch', '--dir', A, 'app@2.0', '--out', join(dir, 'a2.bin'), '--json']);
    expect(f2.status, f2.stderr).toBe(0);
    expect(readFileSync(join(dir, 'a2.bin')).equals(v2)).toBe(true);
  }, 180_000);

  it('a serving depot (schedule of an hour) follows a publish through its event stream after its preferred URL dies', async () => {
    const proxy2 = await startPassthrough(await freePort(), Number(new URL(direct).port));
    try {
      const D3 = join(dir, 'depot-serving');
      const token = runJson(['master', 'token', '--dir', M, '--role', 'depot']).token as string;
      const port = await freePort();
      runJson([
        'depot',
        'init',
        '--dir',
        D3,
        '--master',
        proxy2.url,
        '--master',
        direct,
        '--fingerprint',
        fp,
        '--token',
        token,
        '--name',
        'depot-serving',
        '--listen',
        `127.0.0.1:${port}`,
      ]);
      const dj = join(D3, 'depot.json');
      const dc = JSON.parse(readFileSync(dj, 'utf8'));
      writeFileSync(
        dj,
        JSON.stringify({ ...dc, schedule: { ...dc.schedule, intervalMs: 3_600_000, jitterMs: 0 } }),
      );
      const now = runJson(['status', '--dir', M]).generation as number;
      services.push(startService('depot-serving', ['depot', 'serve', '--dir', D3]));
      // Up before anything else opens its store (a second process creating the index at once races).
      await waitForHttps(`https://127.0.0.1:${port}`);
      await until('the serving depot to sync', () =>
        depotStatus(D3).servedGeneration === now ? true : undefined,
      );
      expect(await proxy2.connections()).toBeGreaterThan(0);

      await proxy2.stop();
      // Let the event stream notice and reconnect (to the direct URL) before the publish.
      await new Promise((r) => setTimeout(r, 3000));
      writeFileSync(join(dir, 'v3.bin'), demoBytes(100_000));
      const g3 = runJson([
        'master',
        'publish',
        '--dir',
        M,
        '--name',
        'app',
        '--version',
        '3.0',
        join(dir, 'v3.bin'),
      ]).generation as number;
      await until(
        'the serving depot to follow the publish through the direct URL',
        () => (depotStatus(D3).servedGeneration === g3 ? true : undefined),
        { timeoutMs: 60_000 },
      );
      await until('its status report to reach the master', () =>
        masterView(M, 'depot-serving')?.servedGeneration === g3 ? true : undefined,
      );
    } finally {
      await proxy2.stop();
    }
  }, 180_000);

  it('every master down: the error names each URL tried and what failed there', async () => {
    const served = depotStatus(D).servedGeneration as number;
    expect(served).toBeGreaterThan(g1);
    await Promise.all(services.map((s) => s.stop()));
    const r = runCli(['depot', 'sync', '--dir', D]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('none of the 3 servers answered');
    expect(r.stderr).toContain('https://127.0.0.1:1: ');
    expect(r.stderr).toContain(`${proxy.url}: `);
    expect(r.stderr).toContain(`${direct}: `);
    expect(r.stderr).toMatch(/connection refused/);
    expect(depotStatus(D).servedGeneration).toBe(served);
  }, 60_000);
});

/**
 * A stale or forked master next to a good one (two `master serve` processes over copies of one master
 * directory: same keys, root and CA). A machine that verified a newer generation refuses the stale
 * master's older metadata, and a generation number the fork signed with other content, with a clear
 * error; it keeps what it has and goes on with the good master.
 */
describe('several master URLs: a stale master is refused (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-stale-e2e-'));
  const M = join(dir, 'good');
  const S = join(dir, 'stale');
  const D = join(dir, 'depot');
  const A = join(dir, 'agent');
  const services: Service[] = [];
  let good = '';
  let stale = '';
  let fp = '';
  let stalePort = 0;
  let goodPort = 0;
  let g1 = 0;

  const publish = (m: string, version: string, bytes: Buffer) => {
    const f = join(dir, `${version}-${bytes.length}.bin`);
    writeFileSync(f, bytes);
    return runJson(['master', 'publish', '--dir', m, '--name', 'app', '--version', version, f])
      .generation as number;
  };

  beforeAll(async () => {
    fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    g1 = publish(M, '1.0', demoBytes(300_000));
    goodPort = await freePort();
    stalePort = await freePort();
    good = `https://127.0.0.1:${goodPort}`;
    stale = `https://127.0.0.1:${stalePort}`;
    services.push(serve('good', M, goodPort));
    await waitForHttps(good);
  }, 60_000);

  const serve = (name: string, m: string, port: number) =>
    startService(name, ['master', 'serve', '--dir', m, '--listen', `127.0.0.1:${port}`]);

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('the same generation number with other content, then an older generation: refused, the good master used', async () => {
    const g2 = g1 + 1;
    // Stale master preferred but not running yet: enrollment and the first sync fail over to the good one.
    const token = runJson(['master', 'token', '--dir', M, '--role', 'depot']).token as string;
    runJson([
      'depot',
      'init',
      '--dir',
      D,
      '--master',
      stale,
      '--master',
      good,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'depot-s',
      '--listen',
      '127.0.0.1:0',
    ]);
    // Each sync asks the preferred (stale) URL first, instead of the one that answered last.
    const dj = join(D, 'depot.json');
    const dc = JSON.parse(readFileSync(dj, 'utf8'));
    writeFileSync(dj, JSON.stringify({ ...dc, sync: { ...dc.sync, preferredMasterRetryMs: 0 } }));
    expect(runJson(['depot', 'sync', '--dir', D]).generation).toBe(g1);
    const agentToken = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    runJson([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      stale,
      '--master',
      good,
      '--fingerprint',
      fp,
      '--token',
      agentToken,
      '--name',
      'pc-s',
    ]);
    const f0 = runCli(['agent', 'fetch', '--dir', A, 'app@1.0', '--out', join(dir, 'a0.bin'), '--json']);
    expect(f0.status, f0.stderr).toBe(0);

    // The fork: a copy of the master (machines included) at g1, taken while it is stopped, which signs
    // its own generation g2; the good master signs another g2.
    await services[0]!.stop();
    cpSync(M, S, { recursive: true });
    expect(publish(S, '2.5', demoBytes(310_000))).toBe(g2);
    expect(publish(M, '2.0', demoBytes(320_000))).toBe(g2);
    services[0] = serve('good', M, goodPort);
    await waitForHttps(good);
    expect(runJson(['depot', 'sync', '--dir', D]).generation).toBe(g2);
    const f0b = runCli(['agent', 'fetch', '--dir', A, 'app@2.0', '--out', join(dir, 'a0b.bin'), '--json']);
    expect(f0b.status, f0b.stderr).toBe(0);

    // The fork comes up as the preferred URL, serving its own generation g2.
    services.push(serve('stale', S, stalePort));
    await waitForHttps(stale);
    const r1 = runCli(['depot', 'sync', '--dir', D, '--json']);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.json.generation).toBe(g2);
    const reused = `names snapshot version ${g2} (generation ${g2}) with other content`;
    expect(r1.stderr).toContain('the catalog of this master URL failed verification');
    expect(r1.stderr).toContain(reused);
    const f1 = runCli(['agent', 'fetch', '--dir', A, 'app@2.0', '--out', join(dir, 'a1.bin'), '--json']);
    expect(f1.status, f1.stderr).toBe(0);
    expect(f1.stderr).toContain(reused);
    // Nothing of the fork was taken: its package is unknown to the depot.
    expect(runCli(['agent', 'fetch', '--dir', A, 'app@2.5', '--out', join(dir, 'x.bin')]).status).not.toBe(0);

    // The good master moves on to g2 + 1: the fork is now simply older.
    expect(publish(M, '3.0', demoBytes(330_000))).toBe(g2 + 1);
    const r2 = runCli(['depot', 'sync', '--dir', D, '--json']);
    expect(r2.status, r2.stderr).toBe(0);
    expect(r2.json.generation).toBe(g2 + 1);
    // (The depot still trusted g2 when it asked the fork first.)
    expect(r2.stderr).toContain(reused);
    const f2 = runCli(['agent', 'fetch', '--dir', A, 'app@3.0', '--out', join(dir, 'a2.bin'), '--json']);
    expect(f2.status, f2.stderr).toBe(0);

    // Only the fork reachable: the sync fails with the rollback named, and the newer generation stays served.
    await services[0]!.stop();
    const r3 = runCli(['depot', 'sync', '--dir', D]);
    expect(r3.status).toBe(1);
    expect(r3.stderr).toMatch(/timestamp\.json: version \d+ is older than the trusted version \d+/);
    expect(depotStatus(D).servedGeneration).toBe(g2 + 1);
    const f3 = runCli(['agent', 'fetch', '--dir', A, 'app@2.0', '--out', join(dir, 'a3.bin')]);
    expect(f3.status).not.toBe(0);
    expect(f3.stderr).toMatch(/timestamp\.json: version \d+ is older than the trusted version \d+/);
  }, 240_000);
});
