import {
  appendFileSync,
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest } from '../../../src/content/manifest.js';
import { DepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { findVersion, getManifest } from '../../../master/db/catalog.js';
import {
  DropboxWatcher,
  type DropCheck,
  type DropOutcome,
  type DropboxOptions,
} from '../../../master/dropbox/watcher.js';
import { initMaster } from '../../../master/init.js';
import { publish } from '../../../master/publish/publish.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

/** A watcher over its own drop folder, with outcomes and checks collected for the test to await. */
class Harness {
  readonly outcomes: DropOutcome[] = [];
  readonly checks: Array<{ key: string; verdict: DropCheck }> = [];
  private waiters: Array<() => void> = [];
  readonly watcher: DropboxWatcher;

  constructor(
    readonly dropbox: string,
    readonly rejected: string,
    opts: Partial<DropboxOptions> & Pick<DropboxOptions, 'publish'>,
  ) {
    this.watcher = new DropboxWatcher({
      dropbox,
      rejected,
      log: silentLogger(),
      settleMs: 200,
      ...opts,
      onOutcome: (o) => {
        this.outcomes.push(o);
        this.wake();
      },
      onCheck: (key, verdict) => {
        this.checks.push({ key, verdict });
        this.wake();
      },
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  /** Resolve once `pred` holds (re-evaluated on every watcher report), failing after `ms`. */
  async until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline)
        throw new Error(
          `timed out waiting for ${what}; outcomes ${JSON.stringify(this.outcomes.map((o) => [o.kind, o.key]))}`,
        );
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 250).unref();
      });
    }
  }

  outcome(key: string): DropOutcome | undefined {
    return this.outcomes.find((o) => o.key === key);
  }
}

describe('master drop folder', () => {
  const tmp = tempDir();
  let ctx: MasterContext;
  let n = 0;
  let h: Harness | undefined;

  beforeAll(async () => {
    await initMaster(join(tmp.dir, 'M'), { log: silentLogger() });
    ctx = await openMaster(join(tmp.dir, 'M'), silentLogger());
  });
  afterEach(async () => {
    await h?.watcher.close();
    h = undefined;
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  /** A fresh drop folder pair per test (the real master uses M/dropbox and M/dropbox-rejected). */
  async function harness(opts: Partial<DropboxOptions> = {}): Promise<Harness> {
    n += 1;
    const dropbox = join(tmp.dir, `dropbox-${n}`);
    const rejected = join(tmp.dir, `rejected-${n}`);
    h = new Harness(dropbox, rejected, {
      publish: async (name, version, path) => await publish(ctx, { name, version, path, actor: 'dropbox' }),
      ...opts,
    });
    await h.watcher.start();
    return h;
  }

  it('publishes a version folder once it has settled, then removes it from the drop folder', async () => {
    const d = await harness();
    const dir = join(d.dropbox, 'editor', '3.1');
    mkdirSync(join(dir, 'bin'), { recursive: true });
    const exe = pseudoRandomBytes(300_000, 5);
    writeFileSync(join(dir, 'bin', 'editor.exe'), exe);
    writeFileSync(join(dir, 'README.txt'), 'hello');
    await d.until(() => d.outcome('editor/3.1') !== undefined, 'the drop to be published');
    const o = d.outcome('editor/3.1')!;
    expect(o.kind).toBe('published');
    const v = (await findVersion(ctx.db, 'editor', '3.1'))!;
    expect(v).toBeDefined();
    const manifest = decodeManifest((await getManifest(ctx.db, v.manifestId))!);
    expect(manifest.files.map((f) => [f.path, f.size])).toEqual([
      ['README.txt', 5],
      ['bin/editor.exe', exe.length],
    ]);
    await d.until(() => !existsSync(dir), 'the published drop to be removed');
    expect(existsSync(join(d.dropbox, 'editor'))).toBe(false);
  });

  it('moves a drop with a bad package name to the rejected folder with a REASON.txt', async () => {
    const d = await harness();
    mkdirSync(join(d.dropbox, 'bad name', '1.0'), { recursive: true });
    writeFileSync(join(d.dropbox, 'bad name', '1.0', 'setup.msi'), 'x');
    await d.until(() => d.outcome('bad name/1.0') !== undefined, 'the bad drop to be rejected');
    const o = d.outcome('bad name/1.0')!;
    expect(o.kind).toBe('rejected');
    if (o.kind !== 'rejected') return;
    expect(o.reason).toMatch(/bad package name "bad name"/);
    expect(o.movedTo.startsWith(join(d.rejected, 'bad name', '1.0-'))).toBe(true);
    expect(readFileSync(join(o.movedTo, 'REASON.txt'), 'utf8')).toMatch(/bad package name/);
    expect(readFileSync(join(o.movedTo, 'setup.msi'), 'utf8')).toBe('x');
    expect(existsSync(join(d.dropbox, 'bad name', '1.0'))).toBe(false);
  });

  it('rejects a drop holding a link that points outside it, and a stray file at the top', async () => {
    const d = await harness();
    const outside = join(tmp.dir, 'secret.txt');
    writeFileSync(outside, 'not for publishing');
    mkdirSync(join(d.dropbox, 'linky', '1.0'), { recursive: true });
    writeFileSync(join(d.dropbox, 'linky', '1.0', 'ok.txt'), 'ok');
    symlinkSync(outside, join(d.dropbox, 'linky', '1.0', 'evil'));
    writeFileSync(join(d.dropbox, 'stray.zip'), 'zip');
    await d.until(
      () => d.outcome('linky/1.0') !== undefined && d.outcome('stray.zip') !== undefined,
      'both bad drops to be rejected',
    );
    const link = d.outcome('linky/1.0')!;
    expect(link.kind).toBe('rejected');
    if (link.kind === 'rejected') {
      expect(link.reason).toMatch(/link points outside the package folder/);
      expect(readFileSync(join(link.movedTo, 'REASON.txt'), 'utf8')).toMatch(/outside/);
    }
    const stray = d.outcome('stray.zip')!;
    expect(stray.kind).toBe('rejected');
    if (stray.kind === 'rejected') {
      expect(stray.reason).toMatch(/must be a folder NAME\/VERSION/);
      expect(readdirSync(stray.movedTo).sort()).toEqual(['REASON.txt', 'stray.zip']);
    }
    expect(await findVersion(ctx.db, 'linky', '1.0')).toBeUndefined();
  });

  it('rejects a drop holding a hard link to a file outside it', async () => {
    const d = await harness();
    const outside = join(tmp.dir, 'hard-secret.txt');
    writeFileSync(outside, 'not for publishing');
    mkdirSync(join(d.dropbox, 'hardy', '1.0'), { recursive: true });
    writeFileSync(join(d.dropbox, 'hardy', '1.0', 'ok.txt'), 'ok');
    linkSync(outside, join(d.dropbox, 'hardy', '1.0', 'notes.txt'));
    await d.until(() => d.outcome('hardy/1.0') !== undefined, 'the hard-linked drop to be rejected');
    const o = d.outcome('hardy/1.0')!;
    expect(o.kind).toBe('rejected');
    if (o.kind === 'rejected')
      expect(o.reason).toMatch(/notes\.txt: hard link to a file with 1 other name outside/);
    expect(await findVersion(ctx.db, 'hardy', '1.0')).toBeUndefined();
  });

  // Root reads any file, so this case can only be shown as an ordinary user.
  it.skipIf(process.getuid?.() === 0)('rejects a drop with an unreadable file', async () => {
    const d = await harness();
    const dir = join(d.dropbox, 'locked', '1.0');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'a.bin'), 'a');
    chmodSync(join(dir, 'a.bin'), 0o000);
    await d.until(() => d.outcome('locked/1.0') !== undefined, 'the unreadable drop to be rejected');
    const o = d.outcome('locked/1.0')!;
    expect(o.kind).toBe('rejected');
    if (o.kind === 'rejected') expect(o.reason).toMatch(/permission denied/);
  });

  it('does not publish while the drop keeps changing within the settle period', async () => {
    let t = 1_000_000;
    const d = await harness({ clockMs: () => t });
    const dir = join(d.dropbox, 'slow', '1.0');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'part.bin'), pseudoRandomBytes(10_000, 1));
    // The clock stands still: however often the watcher checks, the drop has not been quiet long enough.
    const seen = () => d.checks.filter((c) => c.key === 'slow/1.0' && c.verdict === 'settling').length;
    await d.until(() => seen() >= 3, 'three settle checks');
    appendFileSync(join(dir, 'part.bin'), pseudoRandomBytes(10_000, 2));
    const before = seen();
    await d.until(() => seen() >= before + 2, 'two more settle checks');
    expect(d.outcomes).toEqual([]);
    expect(await findVersion(ctx.db, 'slow', '1.0')).toBeUndefined();
    t += 10_000;
    await d.until(() => d.outcome('slow/1.0') !== undefined, 'the settled drop to be published');
    const v = (await findVersion(ctx.db, 'slow', '1.0'))!;
    expect(v.totalBytes).toBe(20_000);
  });

  it('treats a drop that changed while publishing as still being written, not as bad', async () => {
    let calls = 0;
    const d = await harness({
      publish: async (name, version, path) => {
        calls += 1;
        if (calls === 1) {
          // The copy is still going on: more bytes arrive, and publish refuses the file that grew.
          appendFileSync(join(path, 'big.bin'), pseudoRandomBytes(5_000, 9));
          throw new DepotsyncError(
            'conflict',
            `publish ${name}@${version}: big.bin changed size while it was read`,
          );
        }
        return await publish(ctx, { name, version, path, actor: 'dropbox' });
      },
    });
    const dir = join(d.dropbox, 'growing', '2.0');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'big.bin'), pseudoRandomBytes(50_000, 8));
    await d.until(
      () => d.outcome('growing/2.0') !== undefined,
      'the drop to be published after it settled again',
    );
    expect(d.outcome('growing/2.0')!.kind).toBe('published');
    expect(calls).toBe(2);
    expect((await findVersion(ctx.db, 'growing', '2.0'))!.totalBytes).toBe(55_000);
    expect(existsSync(d.rejected) ? readdirSync(d.rejected) : []).toEqual([]);
  });

  it('picks up drops already there when it starts, and rejects content conflicting with a published version', async () => {
    n += 1;
    const dropbox = join(tmp.dir, `dropbox-${n}`);
    mkdirSync(join(dropbox, 'editor', '3.1'), { recursive: true });
    writeFileSync(join(dropbox, 'editor', '3.1', 'other.txt'), 'different content');
    h = new Harness(dropbox, join(tmp.dir, `rejected-${n}`), {
      publish: async (name, version, path) => await publish(ctx, { name, version, path, actor: 'dropbox' }),
    });
    const d = h;
    await d.watcher.start();
    await d.until(() => d.outcome('editor/3.1') !== undefined, 'the existing drop to be handled');
    const o = d.outcome('editor/3.1')!;
    expect(o.kind).toBe('rejected');
    if (o.kind === 'rejected') expect(o.reason).toMatch(/already published with other content/);
  });

  it('validates its options', () => {
    expect(
      () =>
        new DropboxWatcher({
          dropbox: 'x',
          rejected: 'y',
          log: silentLogger(),
          settleMs: -1,
          publish: async () => ({}) as never,
        }),
    ).toThrow(/settleMs must be an integer >= 0, got -1/);
  });
});
