import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentCommands } from '../../agent/commands.js';
import { agentLayout } from '../../agent/layout.js';
import { silentLogger } from '../../src/log.js';
import { initMaster } from '../../master/init.js';
import { openMaster, type MasterContext } from '../../master/context.js';
import { publish } from '../../master/publish/publish.js';
import { createEnrollmentToken } from '../../master/db/tokens.js';
import { approveMachine, revokeMachine } from '../../master/machines/actions.js';
import { startMasterServer, type MasterServer } from '../../master/server/serve.js';
import { pseudoRandomBytes } from '../helpers/tmp.js';
import { find, runCommand } from './cli-helpers.js';

const log = silentLogger();
let root: string;
let ctx: MasterContext;
let server: MasterServer;
let fingerprint: string;
const payload = pseudoRandomBytes(300_000, 11);
const init = find(agentCommands, 'agent', 'init');
const fetch = find(agentCommands, 'agent', 'fetch');
const depots = find(agentCommands, 'agent', 'depots');

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'agent-cli-'));
  const m = await initMaster(join(root, 'master'), { log });
  fingerprint = m.fingerprint;
  ctx = await openMaster(join(root, 'master'), log);
  const file = join(root, 'setup.bin');
  writeFileSync(file, payload);
  await publish(ctx, { name: 'app', version: '1.0', path: file, actor: 'test' });
  server = await startMasterServer(ctx, { host: '127.0.0.1', port: 0, dropbox: false, refresher: false });
});

afterAll(async () => {
  await server?.close();
  await ctx?.close();
  rmSync(root, { recursive: true, force: true });
});

const token = async () => (await createEnrollmentToken(ctx.db, { role: 'agent', createdBy: 'test' })).token;

async function enrolled(name: string, extra: string[] = []): Promise<string> {
  const dir = join(root, name);
  const r = await runCommand(init, [
    '--dir',
    dir,
    '--master',
    server.url,
    '--fingerprint',
    fingerprint,
    '--token',
    await token(),
    '--name',
    name,
    '--json',
    ...extra,
  ]);
  expect(r.result.json).toMatchObject({ name, state: 'approved', rootVersion: 1 });
  return dir;
}

async function fails(p: Promise<unknown>): Promise<Error & { code?: string; hint?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a failure');
}

describe('agent init', () => {
  it('pins the root, makes a key, enrolls with a token', async () => {
    const dir = await enrolled('agent-a');
    const l = agentLayout(dir);
    for (const p of [l.config, l.key, l.cert, l.caCert, join(l.tufDir, 'root.json'), l.state])
      expect(existsSync(p)).toBe(true);
    expect(statSync(l.key).mode & 0o777).toBe(0o600);
    expect(readFileSync(l.caCert, 'utf8')).toBe(ctx.ca.certPem);
  });

  it('refuses a master whose root does not match the fingerprint, before making any key', async () => {
    const dir = join(root, 'agent-wrongfp');
    const e = await fails(
      runCommand(init, [
        '--dir',
        dir,
        '--master',
        server.url,
        '--fingerprint',
        'ab'.repeat(32),
        '--token',
        await token(),
        '--name',
        'agent-wrongfp',
      ]),
    );
    expect(e.code).toBe('hash-mismatch');
    expect(e.message).toMatch(/pinned fingerprint/);
    expect(existsSync(agentLayout(dir).key)).toBe(false);
    expect(existsSync(agentLayout(dir).config)).toBe(false);
  });

  it('without a token: pending until approved, and fetch says so clearly', async () => {
    const dir = join(root, 'agent-p');
    const r = await runCommand(init, [
      '--dir',
      dir,
      '--master',
      server.url,
      '--fingerprint',
      fingerprint,
      '--name',
      'agent-p',
      '--json',
    ]);
    expect(r.result.json).toMatchObject({ state: 'pending' });
    const e = await fails(runCommand(fetch, ['--dir', dir, 'app@1.0', '--out', join(root, 'p-out')]));
    expect(e.code).toBe('forbidden');
    expect(e.message).toMatch(/waiting for approval/);
    await approveMachine(ctx, 'agent-p', { actor: 'test' });
    const again = await runCommand(init, ['--dir', dir, '--json']);
    expect(again.result.json).toMatchObject({ state: 'approved' });
  });
});

describe('agent fetch', () => {
  it('fetches from the master (depots unreachable), --json per docs/cli.md', async () => {
    const dir = await enrolled('agent-f', ['--depot', 'dead=https://127.0.0.1:1']);
    const out = join(root, 'f-out', 'setup.bin');
    mkdirSync(join(root, 'f-out'));
    // No version: "latest" reads every bin of the catalog once (kept in A/tuf; later only the changed ones).
    const r = await runCommand(fetch, ['--dir', dir, 'app', '--out', out, '--json']);
    expect(r.result.json).toMatchObject({
      name: 'app',
      version: '1.0',
      bytes: payload.length,
      source: ['master'],
    });
    expect((r.result.json as { id: string }).id).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(out).equals(payload)).toBe(true);
    const d = await runCommand(depots, ['--dir', dir, '--json']);
    const rows = (d.result.json as { sources: Array<{ name: string; rank: number; reasons: string[] }> })
      .sources;
    expect(rows.map((x) => x.name)).toEqual(['master', 'dead']);
    expect(rows[1]!.reasons.join(' ')).toMatch(/unreachable|penalised/);
  });

  it('--exec runs only after verification, with the verified path, and passes the exit code through', async () => {
    const dir = await enrolled('agent-x');
    const outDir = join(root, 'x-out');
    mkdirSync(outDir);
    const script = join(root, 'installer.sh');
    writeFileSync(script, `#!/bin/sh\ncp "$1" "${join(outDir, 'copy')}"\nexit 7\n`);
    const r = await runCommand(fetch, [
      '--dir',
      dir,
      'app@1.0',
      '--out',
      join(outDir, 'setup bin'),
      '--exec',
      `/bin/sh ${script}`,
      '--json',
    ]);
    expect(r.result.exitCode).toBe(7);
    expect(readFileSync(join(outDir, 'copy')).equals(payload)).toBe(true);
    // A fetch that fails never runs the command.
    const marker = join(outDir, 'ran');
    await fails(
      runCommand(fetch, [
        '--dir',
        dir,
        'app@9.9',
        '--out',
        join(outDir, 'nope'),
        '--exec',
        `touch ${marker}; true`,
      ]),
    );
    expect(existsSync(marker)).toBe(false);
  });

  it('a revoked agent: a clear error naming the revocation', async () => {
    const dir = await enrolled('agent-r');
    await revokeMachine(ctx, 'agent-r', { actor: 'test' });
    mkdirSync(join(root, 'r-out'));
    const e = await fails(runCommand(fetch, ['--dir', dir, 'app@1.0', '--out', join(root, 'r-out', 'x')]));
    expect(e.code).toBe('forbidden');
    expect(e.message).toMatch(/refused this agent: revoked/);
    expect(existsSync(join(root, 'r-out', 'x'))).toBe(false);
  });
});
