import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

/**
 * The CLI against a real `master serve` process: enrollment with a token, a fetch
 * straight from the master, then `master block` and `master revoke` from another process take effect
 * on the running server at the next request.
 */
describe('master CLI against a running master process', () => {
  const tmp = tempDir();
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    tmp.cleanup();
  });

  it('enrolls, serves, and refuses a blocked then revoked agent', async () => {
    const M = join(tmp.dir, 'M');
    const fp = runCli(['master', 'init', '--dir', M, '--json']).json.fingerprint as string;
    writeFileSync(join(tmp.dir, 'tool.bin'), pseudoRandomBytes(300_000, 3));
    expect(
      runCli([
        'master',
        'publish',
        '--dir',
        M,
        '--name',
        'tool',
        '--version',
        '1',
        join(tmp.dir, 'tool.bin'),
        '--json',
      ]).status,
    ).toBe(0);
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${port}`]));
    await waitForHttps(url);

    // A used token is refused clearly; a fresh one enrolls at once.
    const token = runCli(['master', 'token', '--dir', M, '--role', 'agent', '--json']).json.token as string;
    const A = join(tmp.dir, 'A');
    const init = runCli([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      url,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'pc-1',
      '--json',
    ]);
    expect(init.status).toBe(0);
    expect(init.json.state).toBe('approved');
    const again = runCli([
      'agent',
      'init',
      '--dir',
      join(tmp.dir, 'A2'),
      '--master',
      url,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'pc-2',
    ]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/enrollment token was already used/);

    const out = join(tmp.dir, 'out.bin');
    const ok = runCli(['agent', 'fetch', '--dir', A, 'tool@1', '--out', out, '--json']);
    expect(ok.status).toBe(0);
    expect(ok.json).toMatchObject({ name: 'tool', version: '1', bytes: 300_000 });

    // Blocked from another process: the running server refuses the next request, with the reason.
    expect(runCli(['master', 'block', '--dir', M, 'pc-1', '--json']).json.state).toBe('blocked');
    const blocked = runCli(['agent', 'fetch', '--dir', A, 'tool@1', '--out', join(tmp.dir, 'out2.bin')]);
    expect(blocked.status).toBe(1);
    expect(blocked.stderr).toMatch(/blocked/);

    // Revoked: refused, and its serial is on the signed revocation list the master serves.
    const revoked = runCli(['master', 'revoke', '--dir', M, 'pc-1', '--json']);
    expect(revoked.json.state).toBe('revoked');
    const refused = runCli(['agent', 'fetch', '--dir', A, 'tool@1', '--out', join(tmp.dir, 'out3.bin')]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/revoked/);
  }, 120_000);
});
