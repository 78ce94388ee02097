import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { newDepotConfig, saveDepotConfig } from '../../depot/config.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const me = userInfo().username;
const isRoot = process.getuid?.() === 0;

/** `systemd-analyze verify`: exit 0 and nothing on stderr (it exits 0 on unknown values, warning only). */
function verifyUnit(path: string): { status: number | null; stderr: string } {
  const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr.trim() };
}

describe('depotsync service install / check / uninstall', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  const M = join(tmp.dir, 'master');
  expect(runCli(['master', 'init', '--dir', M, '--json']).status).toBe(0);

  it('--dry-run prints a hardened unit and changes nothing', () => {
    const units = join(tmp.dir, 'dry-units');
    const r = runCli([
      'service',
      'install',
      '--role',
      'master',
      '--dir',
      M,
      '--listen',
      '127.0.0.1:9443',
      '--unit-dir',
      units,
      '--dry-run',
      '--json',
    ]);
    expect(r.status).toBe(0);
    const unit = r.json.unit as string;
    for (const line of [
      'User=depotsync',
      'Group=depotsync',
      `ExecStart=${process.execPath} `,
      `master serve --dir ${M} --listen 127.0.0.1:9443`,
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'ProtectSystem=strict',
      `ReadWritePaths=${M}`,
      'NoNewPrivileges=yes',
      'PrivateTmp=yes',
      'CapabilityBoundingSet=',
      'WantedBy=multi-user.target',
    ])
      expect(unit).toContain(line);
    expect(r.json.path).toBe(join(units, 'depotsync-master.service'));
    expect(existsSync(units)).toBe(false);
    // A port below 1024 gets exactly the capability to bind it.
    const low = runCli([
      'service',
      'install',
      '--role',
      'master',
      '--dir',
      M,
      '--listen',
      '0.0.0.0:443',
      '--dry-run',
      '--json',
    ]);
    expect(low.json.unit).toContain('AmbientCapabilities=CAP_NET_BIND_SERVICE');
  });

  it('install writes a unit systemd-analyze accepts, gives the folder to the user; check passes; uninstall removes it', () => {
    const units = join(tmp.dir, 'units');
    chmodSync(M, 0o755);
    // A fresh master.db is 0644: install makes it private (it holds TOTP secrets).
    expect(statSync(join(M, 'master.db')).mode & 0o777).toBe(0o644);
    const r = runCli([
      'service',
      'install',
      '--role',
      'master',
      '--dir',
      M,
      '--user',
      me,
      '--unit-dir',
      units,
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const path = join(units, 'depotsync-master.service');
    expect(r.json).toMatchObject({ path, user: me, enabled: false });
    const unit = readFileSync(path, 'utf8');
    expect(unit).toContain(`User=${me}`);
    expect(statSync(M).mode & 0o777).toBe(0o700);
    expect(statSync(join(M, 'master.db')).mode & 0o777).toBe(0o600);
    expect(verifyUnit(path)).toEqual({ status: 0, stderr: '' });

    const c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', me, '--json']);
    expect(c.status, c.stdout).toBe(0);
    expect(c.json.ok).toBe(true);
    expect(c.json.checks.map((i: { check: string }) => i.check)).toEqual(
      expect.arrayContaining([
        'user',
        'folder owner',
        'folder mode',
        'files owner',
        'configuration',
        'private file',
      ]),
    );

    expect(runCli(['service', 'uninstall', '--role', 'master', '--unit-dir', units, '--json']).json).toEqual({
      removed: path,
      stopped: false,
    });
    expect(existsSync(path)).toBe(false);
  });

  it('the verifier catches a unit systemd would not run (the check of the test itself can fail)', () => {
    const units = join(tmp.dir, 'units-bad');
    runCli(['service', 'install', '--role', 'master', '--dir', M, '--user', me, '--unit-dir', units]);
    const path = join(units, 'depotsync-master.service');
    writeFileSync(path, readFileSync(path, 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=bogus'));
    expect(verifyUnit(path).stderr).toContain('Failed to parse protect system value');
  });

  it('check names each problem: a readable key, a foreign owner, a missing user, a bad configuration', () => {
    const key = join(M, 'ca', 'ca-key.pem');
    chmodSync(key, 0o644);
    let c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', me]);
    expect(c.status).toBe(1);
    expect(c.stdout).toContain(`FAIL private file: ${key}: mode 0644, not 0600 (chmod 0600 ${key}`);
    chmodSync(key, 0o600);

    chmodSync(M, 0o757);
    c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', me]);
    expect(c.stdout).toContain(`FAIL folder mode: ${M} has mode 0757`);
    chmodSync(M, 0o700);

    c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', 'nosuchuser-ds', '--json']);
    expect(c.status).toBe(1);
    expect(c.json.checks[0]).toMatchObject({
      check: 'user',
      ok: false,
      detail: 'no user nosuchuser-ds on this system',
    });

    if (isRoot) {
      // Owned by root, served by another user: the service could not write its database.
      c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', 'nobody']);
      expect(c.stdout).toMatch(/FAIL folder owner: .* belongs to uid 0, not nobody/);
      expect(c.stdout).toMatch(/FAIL files owner: \d+ not owned by nobody/);
    }

    const config = join(M, 'master.json');
    const good = readFileSync(config, 'utf8');
    writeFileSync(config, JSON.stringify({ ...JSON.parse(good), bins: 7 }));
    c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', me]);
    expect(c.stdout).toContain('FAIL configuration: master.json: bins must be 16, 256 or 4096, got 7');
    writeFileSync(
      config,
      JSON.stringify({
        ...JSON.parse(good),
        tls: { certFile: join(M, 'nope.pem'), keyFile: join(M, 'nope-key.pem') },
      }),
    );
    c = runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', me]);
    expect(c.stdout).toContain(
      `FAIL configuration: tls.certFile ${join(M, 'nope.pem')}: no such file or directory`,
    );
    writeFileSync(config, good);
    expect(runCli(['service', 'check', '--role', 'master', '--dir', M, '--user', me]).status).toBe(0);
  });

  it('a depot folder: its machine key must be private', async () => {
    const D = join(tmp.dir, 'depot');
    mkdirSync(join(D, 'tls'), { recursive: true, mode: 0o700 });
    await saveDepotConfig(
      join(D, 'depot.json'),
      newDepotConfig({ name: 'depot-1', masterUrl: 'https://127.0.0.1:8443', fingerprint: 'a'.repeat(64) }),
    );
    writeFileSync(join(D, 'tls', 'depot-key.pem'), 'key', { mode: 0o640 });
    writeFileSync(join(D, 'tls', 'depot-cert.pem'), 'cert');
    chmodSync(D, 0o700);
    const c = runCli(['service', 'check', '--role', 'depot', '--dir', D, '--user', me]);
    expect(c.status).toBe(1);
    expect(c.stdout).toContain(`FAIL private file: ${join(D, 'tls', 'depot-key.pem')}: mode 0640, not 0600`);
    const dry = runCli(['service', 'install', '--role', 'depot', '--dir', D, '--dry-run', '--json']);
    expect(dry.json.unit).toContain(`depot serve --dir ${D}\n`);
  });

  it('refuses bad input with one clear line', () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ['service', 'install', '--role', 'agent', '--dir', M, '--dry-run'],
        /--role must be master or depot, got "agent"/,
      ],
      [
        ['service', 'install', '--role', 'master', '--dir', join(tmp.dir, 'none'), '--dry-run'],
        /master config .*master\.json/,
      ],
      [
        ['service', 'install', '--role', 'master', '--dir', M, '--user', 'Bad User', '--dry-run'],
        /--user must be a system user name/,
      ],
      [
        ['service', 'install', '--role', 'master', '--dir', M, '--unit-name', 'x.timer', '--dry-run'],
        /--unit-name must end in \.service/,
      ],
      [
        ['service', 'uninstall', '--role', 'master', '--unit-dir', join(tmp.dir, 'empty')],
        /no unit .*depotsync-master\.service/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = runCli(args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr).toMatch(message);
    }
    // A unit someone else wrote under our name is left alone.
    const units = join(tmp.dir, 'foreign');
    mkdirSync(units);
    writeFileSync(join(units, 'depotsync-master.service'), '[Unit]\nDescription=mine\n');
    const r = runCli(['service', 'uninstall', '--role', 'master', '--unit-dir', units]);
    expect(r.stderr).toMatch(/was not written by depotsync service install; left alone/);
    expect(existsSync(join(units, 'depotsync-master.service'))).toBe(true);
  });

  it.runIf(isRoot)('install creates the dedicated system user when it is missing', () => {
    const user = `dsvc${process.pid % 100000}`;
    const D = join(tmp.dir, 'master-user');
    expect(runCli(['master', 'init', '--dir', D, '--json']).status).toBe(0);
    try {
      const r = runCli([
        'service',
        'install',
        '--role',
        'master',
        '--dir',
        D,
        '--user',
        user,
        '--unit-dir',
        join(tmp.dir, 'u2'),
      ]);
      expect(r.status, r.stderr).toBe(0);
      const passwd = readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .find((l) => l.startsWith(`${user}:`));
      expect(passwd).toMatch(/:\/usr\/sbin\/nologin$/);
      const uid = Number(passwd!.split(':')[2]);
      expect(statSync(join(D, 'master.db')).uid).toBe(uid);
      expect(statSync(join(D, 'keys', 'timestamp.pem')).uid).toBe(uid);
      expect(runCli(['service', 'check', '--role', 'master', '--dir', D, '--user', user]).status).toBe(0);
    } finally {
      spawnSync('userdel', [user]);
    }
  });
});
