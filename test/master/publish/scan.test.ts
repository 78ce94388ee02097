import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { DepotsyncError } from '../../../src/errors.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import { listAudit } from '../../../master/db/audit.js';
import { currentGeneration, findVersion } from '../../../master/db/catalog.js';
import { DropboxWatcher, type DropOutcome } from '../../../master/dropbox/watcher.js';
import { publish } from '../../../master/publish/publish.js';
import { addOperator } from '../../../master/db/operators.js';
import { createMasterApp } from '../../../master/server/app.js';
import { flattenOutput, runScan } from '../../../master/publish/scan.js';
import { runCli } from '../../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

/**
 * Publishing safety: a small shell script plays the antivirus scanner. It refuses any
 * path holding the word INFECTED (printing what it found, as clamscan does) and passes the rest.
 */
const SCANNER = `#!/bin/sh
echo "scanning $1"
if grep -rl INFECTED "$1" >/dev/null 2>&1; then
  echo "$(grep -rl INFECTED "$1" | head -1): Eicar-Test-Signature FOUND" >&2
  exit 1
fi
echo "$1: OK"
exit 0
`;

describe('publish scan command', () => {
  const tmp = tempDir();
  const scanner = join(tmp.dir, 'scanner.sh');
  const hanging = join(tmp.dir, 'hanging.sh');
  const chatty = join(tmp.dir, 'chatty.sh');
  let ctx: MasterContext;
  const M = join(tmp.dir, 'M');

  beforeAll(async () => {
    writeFileSync(scanner, SCANNER, { mode: 0o755 });
    // A scanner that never answers; its `sleep` child holds the pipes open too (the whole group must go).
    writeFileSync(hanging, '#!/bin/sh\necho "starting"\nsleep 60\necho never\n', { mode: 0o755 });
    // 20,000 lines of output, then a refusal: only the end is kept.
    writeFileSync(
      chatty,
      '#!/bin/sh\ni=0\nwhile [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done\necho "LAST LINE"\nexit 3\n',
      { mode: 0o755 },
    );
    await initMaster(M, {
      log: silentLogger(),
      config: { publishScanCommand: [scanner], publishScanTimeoutMs: 20_000, dropboxSettleMs: 100 },
    });
    ctx = await openMaster(M, silentLogger());
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  it('runScan: exit 0 passes, a non-zero exit refuses with the output, no shell is involved', async () => {
    const clean = join(tmp.dir, 'clean.bin');
    writeFileSync(clean, 'hello');
    const ok = await runScan({ command: [scanner], timeoutMs: 10_000 }, [clean]);
    expect(ok).toMatchObject({ passed: true, exitCode: 0, timedOut: false, truncated: false });
    expect(ok.output).toContain(`${clean}: OK`);
    // A path full of shell syntax is one argument, never interpreted.
    const odd = join(tmp.dir, 'x; touch pwned; $(id) `id`');
    writeFileSync(odd, 'INFECTED');
    const bad = await runScan({ command: [scanner], timeoutMs: 10_000 }, [odd]);
    expect(bad).toMatchObject({ passed: false, exitCode: 1, timedOut: false });
    expect(bad.output).toContain('Eicar-Test-Signature FOUND');
    expect(existsSync(join(tmp.dir, 'pwned'))).toBe(false);
  });

  it('runScan: a hanging scanner is killed with its children at the timeout and refuses', async () => {
    const r = await runScan({ command: [hanging], timeoutMs: 300, killGraceMs: 500 }, [tmp.dir]);
    expect(r).toMatchObject({ passed: false, timedOut: true });
    expect(r.output).toContain('starting');
    expect(r.output).not.toContain('never');
  });

  it('runScan: keeps only the last 4 KiB of a long output; a missing program refuses', async () => {
    const r = await runScan({ command: [chatty], timeoutMs: 20_000 }, [tmp.dir]);
    expect(r).toMatchObject({ passed: false, exitCode: 3, truncated: true });
    expect(Buffer.byteLength(r.output)).toBeLessThanOrEqual(4096);
    expect(r.output.trimEnd().endsWith('LAST LINE')).toBe(true);
    const missing = await runScan({ command: [join(tmp.dir, 'no-such-scanner')], timeoutMs: 1000 }, [
      tmp.dir,
    ]);
    expect(missing).toMatchObject({ passed: false, startError: 'ENOENT' });
    expect(flattenOutput('a\nb\r\nc\u001b[31m\n')).toBe('a | b | c [31m');
  });

  it('publishes content the scanner passes', async () => {
    const file = join(tmp.dir, 'good.bin');
    writeFileSync(file, pseudoRandomBytes(100_000, 3));
    const r = await publish(ctx, { name: 'good', version: '1', path: file, actor: 'test' });
    expect(r.unchanged).toBe(false);
    expect((await findVersion(ctx.db, 'good', '1'))?.manifestId).toBe(r.id);
  });

  it('refuses content the scanner flags: the output is in the error and the audit log, nothing enters the catalog', async () => {
    const dir = join(tmp.dir, 'bad-folder');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'readme.txt'), 'fine');
    writeFileSync(join(dir, 'sub', 'payload.exe'), 'MZ... INFECTED ...');
    const before = await currentGeneration(ctx.db);
    const err = await publish(ctx, {
      name: 'bad',
      version: '1',
      path: dir,
      actor: 'op-alice',
      address: '10.0.0.9',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DepotsyncError);
    expect((err as DepotsyncError).code).toBe('forbidden');
    expect((err as DepotsyncError).message).toMatch(
      /^publish bad@1 refused: the scan command exited with status 1; scanner output: .*payload\.exe: Eicar-Test-Signature FOUND/,
    );
    expect((err as DepotsyncError).message).not.toContain('\n');
    expect(await findVersion(ctx.db, 'bad', '1')).toBeUndefined();
    expect(await currentGeneration(ctx.db)).toBe(before);
    const audit = (await listAudit(ctx.db, { action: 'publish.refused', target: 'bad@1' })).entries[0];
    expect(audit).toMatchObject({
      actor: 'op-alice',
      address: '10.0.0.9',
      detail: { exitCode: 1, timedOut: false },
    });
    expect(audit?.detail.output).toContain('Eicar-Test-Signature FOUND');
    expect((await listAudit(ctx.db, { action: 'publish', target: 'bad@1' })).entries).toHaveLength(0);
  });

  it('refuses when the scanner hangs past publishScanTimeoutMs', async () => {
    const saved = { ...ctx.config };
    ctx.config.publishScanCommand = [hanging];
    ctx.config.publishScanTimeoutMs = 300;
    try {
      const file = join(tmp.dir, 'slow.bin');
      writeFileSync(file, 'x');
      await expect(publish(ctx, { name: 'slow', version: '1', path: file, actor: 'test' })).rejects.toThrow(
        /did not finish within 300 ms.*scanner output: starting/,
      );
      expect(await findVersion(ctx.db, 'slow', '1')).toBeUndefined();
      expect(
        (await listAudit(ctx.db, { action: 'publish.refused', target: 'slow@1' })).entries[0]?.detail,
      ).toMatchObject({ timedOut: true });
    } finally {
      Object.assign(ctx.config, saved);
    }
  });

  it('refuses a file that changed between the scan and the ingest', async () => {
    const file = join(tmp.dir, 'swap.bin');
    writeFileSync(file, 'clean at scan time');
    const saved = { ...ctx.config };
    // The "scanner" passes, then the file is replaced before the content is read (as an attacker racing the scan would).
    const swapper = join(tmp.dir, 'swapper.sh');
    writeFileSync(swapper, `#!/bin/sh\nprintf 'INFECTED-18-bytes!' > "$1"\nexit 0\n`, { mode: 0o755 });
    ctx.config.publishScanCommand = [swapper];
    try {
      await expect(publish(ctx, { name: 'swap', version: '1', path: file, actor: 'test' })).rejects.toThrow(
        /swap\.bin changed after it was scanned/,
      );
      expect(await findVersion(ctx.db, 'swap', '1')).toBeUndefined();
    } finally {
      Object.assign(ctx.config, saved);
    }
  });

  it('the operator API: an upload the scanner flags answers 403 with the scanner output; the spool is removed', async () => {
    const app = createMasterApp({ ctx });
    const { token } = await addOperator(ctx.db, { name: 'op-pub', role: 'publisher', createdBy: 'test' });
    const r = await app.request('/v1/admin/publish?name=upl&version=1&filename=setup.exe', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: 'MZ INFECTED',
    });
    expect(r.status).toBe(403);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('forbidden');
    expect(body.error.message).toMatch(/publish upl@1 refused: .*setup\.exe: Eicar-Test-Signature FOUND/);
    expect(await findVersion(ctx.db, 'upl', '1')).toBeUndefined();
    expect(readdirSync(join(M, 'uploads'))).toEqual([]);
    expect((await listAudit(ctx.db, { action: 'publish.refused', target: 'upl@1' })).entries[0]?.actor).toBe(
      'op-pub',
    );
  });

  it('rejects a bad publishScanCommand in master.json by name', async () => {
    const dir = join(tmp.dir, 'M-bad');
    await expect(
      initMaster(dir, { log: silentLogger(), config: { publishScanCommand: [] } }),
    ).rejects.toThrow(/publishScanCommand must be null or a non-empty list/);
    await expect(
      initMaster(join(tmp.dir, 'M-bad2'), {
        log: silentLogger(),
        config: { publishScanCommand: ['/bin/true'], publishScanTimeoutMs: 5 },
      }),
    ).rejects.toThrow(/publishScanTimeoutMs must be an integer from 100/);
  });

  it('the drop folder: a flagged drop is moved aside with the scanner output in REASON.txt; a clean one is published', async () => {
    const dropbox = join(tmp.dir, 'dropbox');
    const rejected = join(tmp.dir, 'dropbox-rejected');
    const outcomes: DropOutcome[] = [];
    let wake = () => {};
    const watcher = new DropboxWatcher({
      dropbox,
      rejected,
      log: silentLogger(),
      settleMs: 100,
      publish: async (name, version, path) => await publish(ctx, { name, version, path, actor: 'dropbox' }),
      onOutcome: (o) => {
        outcomes.push(o);
        wake();
      },
    });
    await watcher.start();
    try {
      mkdirSync(join(dropbox, 'tool', '2'), { recursive: true });
      writeFileSync(join(dropbox, 'tool', '2', 'setup.exe'), 'INFECTED');
      mkdirSync(join(dropbox, 'tool', '3'), { recursive: true });
      writeFileSync(join(dropbox, 'tool', '3', 'setup.exe'), 'clean');
      const deadline = Date.now() + 20_000;
      while (outcomes.length < 2 && Date.now() < deadline)
        await new Promise<void>((r) => ((wake = r), setTimeout(r, 250).unref()));
      const bad = outcomes.find((o) => o.key === 'tool/2');
      expect(bad?.kind).toBe('rejected');
      if (bad?.kind !== 'rejected') return;
      expect(bad.reason).toMatch(
        /refused: the scan command exited with status 1; scanner output: .*setup\.exe: Eicar-Test-Signature FOUND/,
      );
      expect(readFileSync(join(bad.movedTo, 'REASON.txt'), 'utf8')).toContain('Eicar-Test-Signature FOUND');
      expect(readdirSync(bad.movedTo).sort()).toEqual(['REASON.txt', 'setup.exe']);
      expect(await findVersion(ctx.db, 'tool', '2')).toBeUndefined();
      expect(outcomes.find((o) => o.key === 'tool/3')?.kind).toBe('published');
      expect(await findVersion(ctx.db, 'tool', '3')).toBeDefined();
      expect(
        (await listAudit(ctx.db, { action: 'publish.refused', target: 'tool@2' })).entries[0]?.actor,
      ).toBe('dropbox');
    } finally {
      await watcher.close();
    }
  });

  it('the CLI: `master publish` of flagged content exits 1 with one stderr line carrying the scanner output', async () => {
    await ctx.close();
    try {
      const file = join(tmp.dir, 'cli-bad.bin');
      writeFileSync(file, 'INFECTED');
      const r = runCli(['master', 'publish', '--dir', M, '--name', 'clibad', '--version', '1', file]);
      expect(r.status).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /publish clibad@1 refused: the scan command exited with status 1; scanner output: .*cli-bad\.bin: Eicar-Test-Signature FOUND/,
      );
      const good = join(tmp.dir, 'cli-good.bin');
      writeFileSync(good, 'clean');
      const ok = runCli([
        'master',
        'publish',
        '--dir',
        M,
        '--name',
        'cligood',
        '--version',
        '1',
        good,
        '--json',
      ]);
      expect(ok.status).toBe(0);
      expect(ok.json).toMatchObject({ name: 'cligood', version: '1', unchanged: false });
    } finally {
      ctx = await openMaster(M, silentLogger());
    }
    expect(await findVersion(ctx.db, 'clibad', '1')).toBeUndefined();
    expect(await findVersion(ctx.db, 'cligood', '1')).toBeDefined();
  });
});
