import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { agentLayout } from '../../agent/layout.js';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';

/** Status of one request to `url` with an agent's own certificate, on a fresh connection (0: no answer). */
function statusAs(agentDir: string, url: string): Promise<number> {
  const l = agentLayout(agentDir);
  const tls = { key: readFileSync(l.key), cert: readFileSync(l.cert), ca: readFileSync(l.caCert) };
  return new Promise((resolve) => {
    const req = https.get(
      `${url}/v1/metadata/timestamp.json`,
      { ...tls, agent: false, timeout: 3000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Milliseconds from `t0` until the agent is refused (403) at every depot; undefined past `limitMs`. */
async function refusedEverywhere(
  agentDir: string,
  urls: string[],
  t0: number,
  limitMs: number,
): Promise<number | undefined> {
  while (Date.now() - t0 < limitMs) {
    const codes = await Promise.all(urls.map((u) => statusAs(agentDir, u)));
    if (codes.every((c) => c === 403)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/** Sync only when told: an interval of an hour, no jitter (what refuses the agent is then the push). */
function longInterval(depotDir: string): void {
  const path = join(depotDir, 'depot.json');
  const config = JSON.parse(readFileSync(path, 'utf8'));
  config.schedule = { ...config.schedule, intervalMs: 3_600_000, jitterMs: 0 };
  writeFileSync(path, JSON.stringify(config, null, 2));
}

/**
 * Revocation and blocking reach every depot, down two tiers, within seconds: the master announces the
 * new signed list on its event stream, depot-a fetches and enforces it and announces it to depot-b,
 * which does the same. Both depots sync only once an hour, so the scheduled sync cannot be what
 * refuses the agent.
 */
describe('revocation reaches every tier within seconds (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-revoke-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a revoked agent, and a blocked one, are refused at a depot and at its child depot within 10 s', async () => {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    writeFileSync(join(dir, 'v1.bin'), Buffer.alloc(200_000, 3));
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', join(dir, 'v1.bin')]);
    const [mp, ap, bp] = [await freePort(), await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    const [urlA, urlB] = [`https://127.0.0.1:${ap}`, `https://127.0.0.1:${bp}`];
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    const token = (role: string) => runJson(['master', 'token', '--dir', M, '--role', role]).token as string;
    const [DA, DB] = [join(dir, 'depot-a'), join(dir, 'depot-b')];
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DA, name: 'depot-a', port: ap });
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DB, name: 'depot-b', port: bp, parent: urlA });
    longInterval(DA);
    longInterval(DB);
    services.push(startService('depot-a', ['depot', 'serve', '--dir', DA]));
    await waitForHttps(urlA);
    services.push(startService('depot-b', ['depot', 'serve', '--dir', DB]));
    await waitForHttps(urlB);

    const agents = ['agent-r', 'agent-b'].map((name) => {
      const A = join(dir, name);
      runJson([
        'agent',
        'init',
        '--dir',
        A,
        '--name',
        name,
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--token',
        token('agent'),
        '--depot',
        `depot-b=${urlB}`,
      ]);
      return A;
    });
    // Both depots have synced (each syncs at start) and serve both agents.
    for (const A of agents) {
      await until(
        `${A} served by both depots`,
        async () => (await statusAs(A, urlA)) === 200 && (await statusAs(A, urlB)) === 200,
      );
    }
    expect(
      runJson(['agent', 'fetch', '--dir', agents[0]!, 'setup', '--out', join(dir, 'out.bin')]).name,
    ).toBe('setup');

    // Revoke: the clock starts before the CLI process does.
    const t0 = Date.now();
    runJson(['master', 'revoke', '--dir', M, 'agent-r']);
    const revokeMs = await refusedEverywhere(agents[0]!, [urlA, urlB], t0, 30_000);
    console.log(
      `revocation: agent refused at depot-a and depot-b (tier 2) ${revokeMs} ms after \`master revoke\` started`,
    );
    expect(revokeMs).toBeDefined();
    expect(revokeMs!).toBeLessThanOrEqual(10_000);
    expect(await statusAs(agents[1]!, urlB)).toBe(200); // the other agent is unaffected

    // Block (not revoke): refused as fast; approving it again lets it back in as fast.
    const t1 = Date.now();
    runJson(['master', 'block', '--dir', M, 'agent-b']);
    const blockMs = await refusedEverywhere(agents[1]!, [urlA, urlB], t1, 30_000);
    console.log(
      `block: agent refused at depot-a and depot-b (tier 2) ${blockMs} ms after \`master block\` started`,
    );
    expect(blockMs).toBeDefined();
    expect(blockMs!).toBeLessThanOrEqual(10_000);
    const t2 = Date.now();
    runJson(['master', 'approve', '--dir', M, 'agent-b']);
    await until(
      'agent-b accepted again at both depots',
      async () => (await statusAs(agents[1]!, urlA)) === 200 && (await statusAs(agents[1]!, urlB)) === 200,
      10_000,
    );
    console.log(
      `unblock: agent accepted again at both depots ${Date.now() - t2} ms after \`master approve\` started`,
    );
    expect(await statusAs(agents[0]!, urlB)).toBe(403); // the revoked one stays out
  }, 240_000);
});
