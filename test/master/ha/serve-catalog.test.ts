import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { startPostgres, type PgCluster } from '../../helpers/postgres.js';
import { freePort } from '../../helpers/slapd.js';

/**
 * master.json naming a PostgreSQL catalog: what `master serve` and other commands do with a database
 * that cannot be used (unreachable, wrong password, newer schema), the password file, and `master join`.
 */
let cluster: PgCluster;
let root: string;
let M: string;
let url: string;
beforeAll(async () => {
  cluster = await startPostgres();
  root = mkdtempSync(join(tmpdir(), 'depotsync-serve-catalog-'));
  M = join(root, 'm1');
  expect(runCli(['master', 'init', '--dir', M, '--name', 'm1', '--json']).status).toBe(0);
  url = await cluster.createDatabase('servecat');
  const r = runCli(['master', 'migrate', '--dir', M, '--to', url, '--json']);
  expect(r.status, r.stderr).toBe(0);
});
afterAll(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

function withDatabase(database: Record<string, unknown>): () => void {
  const path = join(M, 'master.json');
  const before = readFileSync(path, 'utf8');
  writeFileSync(path, JSON.stringify({ ...JSON.parse(before), database }, null, 2));
  return () => writeFileSync(path, before);
}

async function serveFails(): Promise<{ status: number | null; stderr: string; ms: number }> {
  const port = await freePort();
  const t0 = Date.now();
  const r = runCli(['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${port}`]);
  return { status: r.status, stderr: r.stderr, ms: Date.now() - t0 };
}

describe('master serve on a PostgreSQL catalog that cannot be used', () => {
  it('refuses to start when PostgreSQL is unreachable, with a clear error and a non-zero exit', async () => {
    const port = await freePort();
    const restore = withDatabase({
      url: cluster.url(new URL(url).pathname.slice(1)).replace(/:\d+\//, `:${port}/`),
    });
    try {
      const r = await serveFails();
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/cannot reach the database server/);
      expect(r.stderr).not.toContain(cluster.password);
      expect(r.ms).toBeLessThan(30_000);
    } finally {
      restore();
    }
  }, 60_000);

  it('refuses wrong credentials without printing the password', async () => {
    const bad = url.replace(`:${cluster.password}@`, ':not-the-password@');
    expect(bad).not.toBe(url);
    const restore = withDatabase({ url: bad });
    try {
      const r = await serveFails();
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/refused the login/);
      expect(r.stderr).not.toContain('not-the-password');
    } finally {
      restore();
    }
  }, 60_000);

  it('refuses a database of a newer schema version', async () => {
    const db = new URL(url).pathname.slice(1);
    const { rows } = await cluster.query('SELECT version FROM schema_version', db);
    const version = Number(rows[0].version);
    await cluster.query(`UPDATE schema_version SET version = ${version + 1}`, db);
    try {
      const r = await serveFails();
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`schema v${version + 1} is newer than this depotsync`));
    } finally {
      await cluster.query(`UPDATE schema_version SET version = ${version}`, db);
    }
  }, 60_000);

  it('reads the password from database.passwordFile; a missing file is named', () => {
    const bare = url.replace(`:${cluster.password}@`, '@');
    writeFileSync(join(M, 'db-password'), `${cluster.password}\n`, { mode: 0o600 });
    const restore = withDatabase({ url: bare, passwordFile: 'db-password' });
    try {
      const ok = runCli(['master', 'operator', 'list', '--dir', M, '--json']);
      expect(ok.status, ok.stderr).toBe(0);
      rmSync(join(M, 'db-password'));
      const missing = runCli(['master', 'operator', 'list', '--dir', M]);
      expect(missing.status).not.toBe(0);
      expect(missing.stderr).toMatch(/database.passwordFile .*db-password cannot be read/);
    } finally {
      restore();
    }
    const orphan = withDatabase({ url: '', passwordFile: 'x' });
    try {
      const r = runCli(['master', 'operator', 'list', '--dir', M]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/passwordFile must be a file path, and only with database.url/);
    } finally {
      orphan();
    }
  });
});

describe('master join', () => {
  it('provisions a second master with the same database, its own name and certificate', () => {
    const M2 = join(root, 'm2');
    const r = runCli([
      'master',
      'join',
      '--dir',
      M2,
      '--from',
      M,
      '--name',
      'm2',
      '--host',
      'm2.example',
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.copied).toEqual(expect.arrayContaining(['keys', 'ca']));
    const c = JSON.parse(readFileSync(join(M2, 'master.json'), 'utf8'));
    expect(c).toMatchObject({ name: 'm2', hosts: ['m2.example'], database: { url }, sharedDir: M });
    expect(readFileSync(join(M2, 'keys', 'timestamp.pem'))).toEqual(
      readFileSync(join(M, 'keys', 'timestamp.pem')),
    );
    expect(readFileSync(join(M2, 'tls', 'server-cert.pem'))).not.toEqual(
      readFileSync(join(M, 'tls', 'server-cert.pem')),
    );
    // The joined master reads the same catalog.
    const ops = runCli(['master', 'operator', 'list', '--dir', M2, '--json']);
    expect(ops.status, ops.stderr).toBe(0);
  });

  it('refuses a non-empty folder, the same name, and a source on SQLite', () => {
    const again = runCli(['master', 'join', '--dir', join(root, 'm2'), '--from', M, '--name', 'm3']);
    expect(again.status).not.toBe(0);
    expect(again.stderr).toMatch(/is not empty/);
    const same = runCli(['master', 'join', '--dir', join(root, 'm4'), '--from', M, '--name', 'm1']);
    expect(same.status).not.toBe(0);
    expect(same.stderr).toMatch(/needs its own name/);
    const S = join(root, 'sqlite');
    expect(runCli(['master', 'init', '--dir', S, '--json']).status).toBe(0);
    const lite = runCli(['master', 'join', '--dir', join(root, 'm5'), '--from', S, '--name', 'm5']);
    expect(lite.status).not.toBe(0);
    expect(lite.stderr).toMatch(/keeps its catalog in SQLite/);
  });
});
