import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoBytes } from '../../cli/demo/demo.js';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { CLI, runCli } from '../helpers/cli.js';
import { startDroppingProxy, startTinyproxy, type RunningProxy } from '../helpers/proxies.js';

/** The CLI without blocking this process (the dropping proxy runs in it). */
function runCliAsync(
  args: string[],
): Promise<{ status: number | null; stdout: string; stderr: string; json: any }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => {
      let json: any;
      try {
        json = JSON.parse(stdout.trim().split('\n').pop() ?? '');
      } catch {
        json = undefined;
      }
      resolve({ status, stdout, stderr, json });
    });
  });
}

function setProxy(depotDir: string, proxy: string): void {
  const path = join(depotDir, 'depot.json');
  const v = JSON.parse(readFileSync(path, 'utf8'));
  v.proxy = proxy;
  v.sync = { ...v.sync, retryDelayMs: 50 };
  writeFileSync(path, JSON.stringify(v, null, 2));
}

/**
 * Depots and agents through a real HTTP proxy (tinyproxy on 127.0.0.1): CONNECT tunnels, so mutual TLS
 * stays end to end. A proxy that refuses CONNECT gives an error naming it; a proxy that drops a tunnel
 * mid-transfer costs a retry, and what ends up stored is whole.
 */
describe('HTTPS through proxies (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-proxy-e2e-'));
  const services: Service[] = [];
  const proxies: RunningProxy[] = [];
  const M = join(dir, 'master');
  const payload = demoBytes(6 * 1024 * 1024);
  let masterUrl = '';
  let mp = 0;
  let fp = '';
  let generation = 0;

  beforeAll(async () => {
    fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    writeFileSync(join(dir, 'v1.bin'), payload);
    generation = runJson([
      'master',
      'publish',
      '--dir',
      M,
      '--name',
      'setup',
      '--version',
      '1.0',
      join(dir, 'v1.bin'),
    ]).generation as number;
    mp = await freePort();
    masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    await Promise.all(proxies.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a depot syncs and an agent fetches through tinyproxy (depot.json proxy, HTTPS_PROXY)', async () => {
    const proxy = await startTinyproxy(dir, await freePort(), [mp]);
    proxies.push(proxy);
    const D = join(dir, 'depot-a');
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-a', port: await freePort() });
    setProxy(D, proxy.url);
    const r = runCli(['depot', 'sync', '--dir', D, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.generation).toBe(generation);
    const tunnels = proxy.log().filter((l) => l.includes(`CONNECT 127.0.0.1:${mp}`)).length;
    expect(tunnels).toBeGreaterThan(0);

    // An agent: the proxy from the environment, for its enrollment too.
    const token = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    const A = join(dir, 'agent');
    const beforeInit = proxy.log().filter((l) => l.includes(`CONNECT 127.0.0.1:${mp}`)).length;
    runJson(
      [
        'agent',
        'init',
        '--dir',
        A,
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--token',
        token,
        '--name',
        'pc-1',
      ],
      { HTTPS_PROXY: proxy.url },
    );
    expect(proxy.log().filter((l) => l.includes(`CONNECT 127.0.0.1:${mp}`)).length).toBeGreaterThan(
      beforeInit,
    );
    const out = join(dir, 'out.bin');
    const f = runCli(['agent', 'fetch', '--dir', A, 'setup@1.0', '--out', out, '--json'], {
      env: { HTTPS_PROXY: proxy.url },
    });
    expect(f.status, f.stderr).toBe(0);
    expect(readFileSync(out).equals(payload)).toBe(true);
    expect(proxy.log().filter((l) => l.includes(`CONNECT 127.0.0.1:${mp}`)).length).toBeGreaterThan(tunnels);

    // NO_PROXY exempts the master: the same fetch, no new tunnel.
    const before = proxy.log().filter((l) => l.includes('CONNECT 127.0.0.1')).length;
    const direct = runCli(['agent', 'fetch', '--dir', A, 'setup@1.0', '--out', join(dir, 'out2.bin')], {
      env: { HTTPS_PROXY: proxy.url, NO_PROXY: '127.0.0.1' },
    });
    expect(direct.status, direct.stderr).toBe(0);
    expect(proxy.log().filter((l) => l.includes('CONNECT 127.0.0.1')).length).toBe(before);
  }, 120_000);

  it('a proxy that refuses CONNECT: the sync fails naming the proxy and the refusal', async () => {
    const proxy = await startTinyproxy(dir, await freePort(), [443]);
    proxies.push(proxy);
    const D = join(dir, 'depot-b');
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-b', port: await freePort() });
    setProxy(D, proxy.url);
    const r = runCli(['depot', 'sync', '--dir', D]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`proxy ${proxy.url} refused CONNECT 127.0.0.1:${mp}: 403`);
    expect(proxy.log().some((l) => l.includes(`Refused CONNECT method on port ${mp}`))).toBe(true);

    // An agent whose depot is only reachable through that proxy falls back to the master (NO_PROXY).
    const dp = await freePort();
    const token = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    const A = join(dir, 'agent-b');
    runJson([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      masterUrl,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'pc-b',
      '--depot',
      `depot-b=https://127.0.0.1:${dp}`,
    ]);
    const out = join(dir, 'out-b.bin');
    const f = runCli(
      ['agent', 'fetch', '--dir', A, 'setup@1.0', '--out', out, '--json', '--log-level', 'warn'],
      {
        env: { HTTPS_PROXY: proxy.url, NO_PROXY: `127.0.0.1:${mp}` },
      },
    );
    expect(f.status, f.stderr).toBe(0);
    expect(f.json.source).not.toContain(String(dp));
    expect(f.stderr).toContain(`refused CONNECT 127.0.0.1:${dp}`);
    expect(readFileSync(out).equals(payload)).toBe(true);

    // A proxy setting that is not a URL is refused by name.
    setProxy(D, 'https://127.0.0.1:3128');
    const bad = runCli(['depot', 'sync', '--dir', D]);
    expect(bad.stderr).toMatch(/proxy: only http:\/\/ proxies are supported/);
  }, 120_000);

  it('a proxy that drops the tunnel mid-transfer: the sync retries and stores only whole content', async () => {
    const proxy = await startDroppingProxy(await freePort(), 1024 * 1024);
    proxies.push(proxy);
    const D = join(dir, 'depot-c');
    const dp = await freePort();
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-c', port: dp });
    setProxy(D, proxy.url);
    const r = await runCliAsync(['depot', 'sync', '--dir', D, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.generation).toBe(generation);
    expect(proxy.drops()).toBe(1);
    expect(proxy.log().some((l) => l.startsWith('dropped after'))).toBe(true);

    // What the depot stored is whole: it serves the package (verified on serve) byte for byte.
    services.push(startService('depot-c', ['depot', 'serve', '--dir', D]));
    await waitForHttps(`https://127.0.0.1:${dp}`);
    const token = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    const A = join(dir, 'agent-c');
    runJson([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      masterUrl,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'pc-2',
      '--depot',
      `depot-c=https://127.0.0.1:${dp}`,
    ]);
    const out = join(dir, 'out-c.bin');
    const f = runCli(['agent', 'fetch', '--dir', A, 'setup@1.0', '--out', out, '--json']);
    expect(f.status, f.stderr).toBe(0);
    expect(readFileSync(out).equals(payload)).toBe(true);
  }, 120_000);
});
