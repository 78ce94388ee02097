import { appendFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { importFile } from '../../../depot/offline/import.js';
import { InboxWatcher, type InboxCheck, type InboxOutcome } from '../../../depot/offline/inbox.js';
import { depotLayout } from '../../../depot/layout.js';
import { bytesSeeded, flipped, sectionOffset, servedComplete, startWorld, type World } from './fixture.js';

/** An inbox watcher with its outcomes and checks collected, so the test waits on them instead of sleeping. */
class Harness {
  outcomes: InboxOutcome[] = [];
  checks: Array<{ name: string; verdict: InboxCheck }> = [];
  private waiters: Array<() => void> = [];
  watcher: InboxWatcher;
  constructor(dir: string, opts: { stalledMs: number }) {
    this.watcher = new InboxWatcher({
      inbox: depotLayout(dir).inbox,
      importFile: (p) => importFile(dir, p, { logger: silentLogger() }),
      log: silentLogger(),
      settleMs: 100,
      stalledMs: opts.stalledMs,
      retryMs: 200,
      onOutcome: (o) => (this.outcomes.push(o), this.wake()),
      onCheck: (name, verdict) => (this.checks.push({ name, verdict }), this.wake()),
    });
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }
  async until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}: ${JSON.stringify(this.outcomes)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 250).unref();
      });
    }
  }
}

describe('the inbox imports a bundle only once its copy is complete', () => {
  let w: World;
  let D: string;
  let bundle: string;

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('setup', '1.0', bytesSeeded(2_000_000, 5));
    D = await w.newDepot('ship');
    bundle = (await w.exportFor('ship')).file;
  });
  afterAll(async () => {
    await w?.close();
  });

  it('waits while a file grows, refuses a damaged one and a copy that stopped short, imports a complete one', async () => {
    const h = new Harness(D, { stalledMs: 1500 });
    await h.watcher.start();
    const inbox = depotLayout(D).inbox;
    try {
      // Damaged: refused at once, with a reason file beside it.
      const c = await sectionOffset(bundle, 'chunks');
      writeFileSync(
        join(inbox, 'damaged.bundle'),
        readFileSync(flipped(bundle, w.file('damaged.bundle'), c.at + 100)),
      );
      await h.until(() => h.outcomes.some((o) => o.name === 'damaged.bundle'), 'damaged refused');
      const rejected = h.outcomes.find((o) => o.name === 'damaged.bundle')!;
      expect(rejected.kind).toBe('rejected');
      expect(readFileSync(`${rejected.movedTo}.reason.txt`, 'utf8')).toMatch(
        /^hash-mismatch: .*chunk [0-9a-f]{64} .*do not hash to its id/,
      );
      expect(await servedComplete(D)).toBeUndefined();

      // A copy that stopped short for longer than stalledMs: refused as truncated, never imported.
      const whole = readFileSync(bundle);
      writeFileSync(join(inbox, 'short.bundle'), whole.subarray(0, whole.length - 5000));
      await h.until(() => h.outcomes.some((o) => o.name === 'short.bundle'), 'short refused');
      expect(h.checks.some((x) => x.name === 'short.bundle' && x.verdict === 'growing')).toBe(true);
      expect(h.outcomes.find((o) => o.name === 'short.bundle')).toMatchObject({
        kind: 'rejected',
        reason: expect.stringMatching(/^truncated:/),
      });
      expect(await servedComplete(D)).toBeUndefined();

      // A growing file: the first half, seen as growing (not imported), then the rest.
      const grow = join(inbox, 'full.bundle');
      writeFileSync(grow, whole.subarray(0, 1000));
      await h.until(
        () => h.checks.filter((x) => x.name === 'full.bundle' && x.verdict === 'growing').length >= 1,
        'growing',
      );
      appendFileSync(grow, whole.subarray(1000, whole.length >> 1));
      await h.until(
        () => h.checks.filter((x) => x.name === 'full.bundle' && x.verdict === 'growing').length >= 2,
        'still growing',
      );
      expect(h.outcomes.some((o) => o.name === 'full.bundle')).toBe(false);
      appendFileSync(grow, whole.subarray(whole.length >> 1));
      await h.until(() => h.outcomes.some((o) => o.name === 'full.bundle'), 'imported');
      const done = h.outcomes.find((o) => o.name === 'full.bundle')!;
      expect(done.kind).toBe('imported');
      expect(existsSync(grow)).toBe(false);
      expect(readdirSync(join(inbox, 'done'))).toEqual(['full.bundle']);
      expect(await servedComplete(D)).toBe(2);
    } finally {
      await h.watcher.close();
    }
  });
});
