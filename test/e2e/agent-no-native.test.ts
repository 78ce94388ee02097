import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

const NO_NATIVE = fileURLToPath(new URL('../../scripts/no-native.mjs', import.meta.url));

/**
 * The agent on a machine without any native addon (nothing compiled: no better-sqlite3, no BLAKE3
 * addon, no zstd-napi): every `.node` load in the agent's processes fails. Against a real master
 * (which keeps its addons), it enrolls, fetches and verifies a package, and keeps its state in a file.
 */
describe('agent without native addons', () => {
  const tmp = tempDir();
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    tmp.cleanup();
  });

  it('enrolls and fetches with every native addon refused', async () => {
    const M = join(tmp.dir, 'M');
    const fp = runCli(['master', 'init', '--dir', M, '--json']).json.fingerprint as string;
    const content = pseudoRandomBytes(3_000_000, 21);
    writeFileSync(join(tmp.dir, 'tool.bin'), content);
    const pub = ['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1'];
    expect(runCli([...pub, join(tmp.dir, 'tool.bin'), '--json']).status).toBe(0);
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${port}`]));
    await waitForHttps(url);

    const refusedLog = join(tmp.dir, 'refused-addons.txt');
    const env = {
      NODE_OPTIONS: `--import=${NO_NATIVE}`,
      DEPOTSYNC_NO_NATIVE_LOG: refusedLog,
      DEPOTSYNC_LOG_LEVEL: 'info',
    };
    const token = runCli(['master', 'token', '--dir', M, '--role', 'agent', '--json']).json.token as string;
    const A = join(tmp.dir, 'A');
    const init = runCli(
      ['agent', 'init', '--dir', A, '--master', url, '--fingerprint', fp, '--token', token, '--name', 'pc-1'],
      { env },
    );
    expect(init.status, init.stderr).toBe(0);
    const out = join(tmp.dir, 'out.bin');
    const ok = runCli(['agent', 'fetch', '--dir', A, 'tool@1', '--out', out, '--json'], { env });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ name: 'tool', version: '1', bytes: 3_000_000 });
    expect(readFileSync(out).equals(content)).toBe(true);
    // The hash ran on WebAssembly; state and cache are files.
    expect(ok.stderr).toMatch(/"blake3":"wasm"/);
    expect(existsSync(join(A, 'state.json'))).toBe(true);
    expect(existsSync(join(A, 'state.sqlite'))).toBe(false);
    expect(JSON.parse(readFileSync(join(A, 'state.json'), 'utf8')).seen.generation).toBeGreaterThan(0);
    // The preload really was in force: the BLAKE3 addon was tried and refused (then WebAssembly).
    expect(readFileSync(refusedLog, 'utf8')).toMatch(/blake3/);
  }, 120_000);
});
