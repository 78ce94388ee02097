import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { startPostgres, type PgCluster } from '../../helpers/postgres.js';

let cluster: PgCluster;
let root: string;
beforeAll(async () => {
  cluster = await startPostgres();
  root = mkdtempSync(join(tmpdir(), 'depotsync-migrate-cli-'));
});
afterAll(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe('depotsync master migrate', () => {
  it('moves an initialized master to PostgreSQL and back, and is refused while the master serves', async () => {
    const M = join(root, 'm');
    expect(runCli(['master', 'init', '--dir', M, '--json']).status).toBe(0);
    const url = await cluster.createDatabase('cli');

    // A live serving process holds M/master.lock: refused, nothing changed.
    const lock = join(M, 'master.lock');
    writeFileSync(
      lock,
      JSON.stringify({ pid: process.pid, host: hostname(), purpose: 'serve', since: 'now' }) + '\n',
    );
    const busy = runCli(['master', 'migrate', '--dir', M, '--to', url, '--json']);
    expect(busy.status).not.toBe(0);
    expect(busy.stderr).toMatch(/in use: serve by process/);
    rmSync(lock);

    const r = runCli(['master', 'migrate', '--dir', M, '--to', url, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.to).toBe(`database ${url.replace(/\/\/[^@]*@/, '//')}`);
    expect(r.json.tables.find((t: { name: string }) => t.name === 'metadata_files').rows).toBeGreaterThan(0);
    expect(r.json.metadataSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(readFileSync(join(M, 'master.json'), 'utf8')).database).toEqual({ url });
    expect(r.stdout + r.stderr).not.toContain(cluster.password);

    const back = runCli(['master', 'migrate', '--dir', M, '--to', 'sqlite', '--json']);
    expect(back.status, back.stderr).toBe(0);
    expect(back.json.metadataSha256).toBe(r.json.metadataSha256);
    expect(JSON.parse(readFileSync(join(M, 'master.json'), 'utf8')).database).toBeUndefined();
    // The master works on the SQLite catalog again.
    const ops = runCli(['master', 'operator', 'list', '--dir', M, '--json']);
    expect(ops.status, ops.stderr).toBe(0);

    const usage = runCli(['master', 'migrate', '--dir', M]);
    expect(usage.status).not.toBe(0);
    expect(usage.stderr).toMatch(/--to/);
  });
});
