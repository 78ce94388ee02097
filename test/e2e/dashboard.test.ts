import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type Page } from 'playwright-core';
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

/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core) against real processes:
 * a master and two depots, each `depotsync … serve`, changed from outside by the CLI, as an admin would.
 * Needs the built CLI (npm test builds dist/ first) and /usr/bin/chromium (scripts/system-deps.sh).
 */
const CHROMIUM = '/usr/bin/chromium';
const HOSTILE = '<img src=x onerror=alert(1)>';
const WAIT_MS = 20_000;

describe('dashboard in a browser', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-dashboard-e2e-'));
  const M = join(dir, 'master');
  const DA = join(dir, 'depot-a');
  const DB = join(dir, 'depot-b');
  const services: Service[] = [];
  const logs: string[] = [];
  let browser: Browser | undefined;
  let page: Page;
  let masterUrl = '';
  let adminToken = '';
  let depotAPort = 0;
  const dialogs: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: the dashboard browser test needs Debian's chromium; install it with scripts/system-deps.sh (apt-get install -y chromium)`,
      );
    }
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    // Live updates twice a second, so the test waits less.
    writeFileSync(join(M, 'admin.json'), JSON.stringify({ liveIntervalMs: 500 }));
    const installer = join(dir, 'setup.bin');
    writeFileSync(installer, demoBytes(300_000, 1));
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', installer]);
    adminToken = runJson(['master', 'operator', 'add', '--dir', M, '--name', 'web-admin', '--role', 'admin'])
      .token as string;

    const mp = await freePort();
    masterUrl = `https://127.0.0.1:${mp}`;
    services.push(
      startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`], {
        log: (l) => logs.push(l),
      }),
    );
    await waitForHttps(masterUrl);
    for (const [name, D] of [
      ['depot-a', DA],
      ['depot-b', DB],
    ] as const) {
      const port = await freePort();
      if (name === 'depot-a') depotAPort = port;
      enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name, port });
      // These depots sync only when the test says so (no distribute-now), so their lag can be watched.
      const config = JSON.parse(readFileSync(join(D, 'depot.json'), 'utf8'));
      writeFileSync(
        join(D, 'depot.json'),
        JSON.stringify({ ...config, notify: { ...config.notify, enabled: false } }),
      );
      runJson(['depot', 'sync', '--dir', D]);
      services.push(startService(name, ['depot', 'serve', '--dir', D], { log: (l) => logs.push(l) }));
      await waitForHttps(`https://127.0.0.1:${port}`);
    }
    // A machine waiting for approval (a real enrollment without a token)...
    expect(
      runJson([
        'agent',
        'init',
        '--dir',
        join(dir, 'agent'),
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--name',
        'agent-1',
      ]).state,
    ).toBe('pending');
    // ...and a record whose name bypassed validation (as from an old import): it must render as text.
    const db = new Database(join(M, 'master.db'));
    const now = new Date().toISOString();
    db.prepare(
      "INSERT INTO machines (name, role, state, requested_at, state_changed_at) VALUES (?, 'agent', 'pending', ?, ?)",
    ).run(HOSTILE, now, now);
    db.close();

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    // The master's certificate comes from its own CA, which this throwaway browser profile does not know.
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 390, height: 844 },
    });
    page = await context.newPage();
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  const row = (name: string, state: string) =>
    page.locator(`tr[data-depot="${name}"][data-state="${state}"]`);

  it('logs in with an operator token and sees both depots current', async () => {
    await page.goto(`${masterUrl}/dashboard`);
    expect(page.url()).toBe(`${masterUrl}/dashboard/login`);
    await page.fill('#operator', 'web-admin');
    await page.fill('#token', adminToken);
    await Promise.all([page.waitForURL(`${masterUrl}/dashboard`), page.click('button[type=submit]')]);
    await row('depot-a', 'current').waitFor({ timeout: WAIT_MS });
    await row('depot-b', 'current').waitFor({ timeout: WAIT_MS });
    await page.locator('#conn.live').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('[data-count="current"] b').textContent()).toBe('2');
  });

  it('shows a depot turn lagging on a new publish, then current after its sync, without reloading', async () => {
    await page.evaluate(() => {
      (window as unknown as { stillHere: boolean }).stillHere = true;
    });
    const installer = join(dir, 'setup-1.1.bin');
    writeFileSync(installer, demoBytes(300_000, 2));
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.1', installer]);
    await row('depot-a', 'lagging').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('tr[data-drift="depot-a"]').textContent()).toMatch(/1 gen\./);
    runJson(['depot', 'sync', '--dir', DA]);
    await row('depot-a', 'current').waitFor({ timeout: WAIT_MS });
    await row('depot-b', 'lagging').waitFor({ timeout: WAIT_MS });
    expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);
    runJson(['depot', 'sync', '--dir', DB]);
    await row('depot-b', 'current').waitFor({ timeout: WAIT_MS });
  });

  it('renders the hostile machine name as text: no element, no dialog', async () => {
    const cell = page.locator('tr[data-pending] td.name', { hasText: HOSTILE });
    await cell.waitFor({ timeout: WAIT_MS });
    expect(await cell.textContent()).toBe(HOSTILE);
    expect(await page.locator('main img').count()).toBe(0);
    expect(dialogs).toEqual([]);
  });

  it('approves a pending machine with its button', async () => {
    const approve = page.locator('tr[data-pending="agent-1"] button[data-action="approve"]');
    await approve.waitFor({ timeout: WAIT_MS });
    await Promise.all([page.waitForURL(/\/dashboard\?done=approve&machine=agent-1$/), approve.click()]);
    await expect(page.locator('p.flash').textContent()).resolves.toBe('approved agent-1');
    expect(await page.locator('tr[data-pending="agent-1"]').count()).toBe(0);
    const status = JSON.parse((await get(`${masterUrl}/v1/admin/status?packages=none`, adminToken)).body) as {
      pending: Array<{ name: string }>;
    };
    expect(status.pending.map((p) => p.name)).toEqual([HOSTILE]);
    expect(dialogs).toEqual([]);
  });

  it('exposes /metrics on the master (operator token) and on a depot (its metrics.token)', async () => {
    const master = await get(`${masterUrl}/metrics`, adminToken);
    expect(master.status).toBe(200);
    expect(master.body).toMatch(/^depotsync_depot_served_generation\{depot="depot-a"\} 3$/m);
    expect((await get(`${masterUrl}/metrics`, 'nope')).status).toBe(401);
    const depotToken = readFileSync(join(DA, 'metrics.token'), 'utf8').trim();
    const depot = await get(`https://127.0.0.1:${depotAPort}/metrics`, depotToken);
    expect(depot.status).toBe(200);
    expect(depot.body).toMatch(/^depotsync_depot_served_generation 3$/m);
    expect((await get(`https://127.0.0.1:${depotAPort}/metrics`, adminToken)).status).toBe(401);
  });
});

function get(url: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}
