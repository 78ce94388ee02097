import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAudit } from '../../master/db/audit.js';
import { openMasterDatabase } from '../../master/db/database.js';
import { silentLogger } from '../../src/log.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

describe('depotsync master CLI', () => {
  const tmp = tempDir();
  const M = join(tmp.dir, 'M');
  const file = join(tmp.dir, 'app.bin');
  beforeAll(() => writeFileSync(file, pseudoRandomBytes(500_000, 5)));
  afterAll(() => tmp.cleanup());

  it('init --json prints the fingerprint anyone can check with sha256sum', () => {
    const r = runCli(['master', 'init', '--dir', M, '--json']);
    expect(r.status).toBe(0);
    const sha = createHash('sha256')
      .update(readFileSync(join(M, '1.root.json')))
      .digest('hex');
    expect(r.json).toEqual({
      fingerprint: sha,
      dir: M,
      rootKeyFiles: [join(M, 'keys', 'root.pem')],
      rootThreshold: 1,
    });
  });

  it('publish --json prints {id,name,version,bytes,chunks,generation}', () => {
    const r = runCli(['master', 'publish', '--dir', M, '--name', 'app', '--version', '1.0', file, '--json']);
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ name: 'app', version: '1.0', bytes: 500_000, generation: 2 });
    expect(r.json.id).toMatch(/^[0-9a-f]{64}$/);
    expect(r.json.chunks).toBeGreaterThan(0);
  });

  it('a failure exits non-zero with one clear line on stderr', () => {
    const r = runCli([
      'master',
      'publish',
      '--dir',
      M,
      '--name',
      'app',
      '--version',
      '2',
      join(tmp.dir, 'nope'),
    ]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^depotsync: publish source .*nope: no such file or directory/);
  });

  it('a usage error exits 2 and names the problem', () => {
    const r = runCli(['master', 'publish', '--dir', M, '--bogus']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--bogus'/);
    const r2 = runCli(['master', 'frobnicate']);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toMatch(/unknown command/);
  });

  it('token and operator add print secrets once, in JSON', () => {
    const t = runCli(['master', 'token', '--dir', M, '--role', 'depot', '--json']);
    expect(t.status).toBe(0);
    expect(t.json.token).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    const o = runCli([
      'master',
      'operator',
      'add',
      '--dir',
      M,
      '--name',
      'alice',
      '--role',
      'admin',
      '--json',
    ]);
    expect(o.status).toBe(0);
    expect(o.json).toMatchObject({ name: 'alice', role: 'admin' });
    expect(o.json.token.length).toBeGreaterThan(20);
  });

  it('operator list shows role, TOTP, created, last used and expiry; rotate replaces the token', async () => {
    const l = runCli(['master', 'operator', 'list', '--dir', M, '--json']);
    expect(l.status).toBe(0);
    const alice = l.json.operators.find((o: { name: string }) => o.name === 'alice');
    expect(alice).toMatchObject({ role: 'admin', totp: false, lastUsedAt: null, tokenExpired: false });
    expect(Date.parse(alice.tokenExpiresAt) - Date.parse(alice.createdAt)).toBe(90 * 86_400_000);
    const human = runCli(['master', 'operator', 'list', '--dir', M]);
    expect(human.stdout).toMatch(
      /^NAME +ROLE +TOTP +CREATED +LAST USED +TOKEN EXPIRES\nalice +admin +off +\S+ \S+ +never +\d{4}-/,
    );
    const r = runCli(['master', 'operator', 'rotate', '--dir', M, '--name', 'alice', '--json']);
    expect(r.status).toBe(0);
    expect(r.json.token.length).toBeGreaterThan(20);
    expect(r.json.name).toBe('alice');
    const db = openMasterDatabase(join(M, 'master.db'), { logger: silentLogger() });
    try {
      expect((await listAudit(db, { limit: 1 })).entries[0]).toMatchObject({
        actor: 'cli',
        action: 'operator.rotate',
        target: 'alice',
      });
    } finally {
      db.close();
    }
  });

  it('operator rotate of an unknown operator fails naming it', () => {
    const r = runCli(['master', 'operator', 'rotate', '--dir', M, '--name', 'nobody']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/operator nobody does not exist/);
  });

  it('a directory that is not a master gives a clear error', () => {
    const r = runCli(['master', 'publish', '--dir', tmp.dir, '--name', 'a', '--version', '1', file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is not a depotsync master directory.*depotsync master init/);
  });
});
