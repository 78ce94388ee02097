import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statusCommand } from '../../cli/status-command.js';
import { silentLogger } from '../../src/log.js';
import { openDepot } from '../../depot/depot.js';
import { randomBytesSeeded, startUpstream, writeDepotDir, type Upstream } from '../depot/fixture.js';

const run = (dir: string, json = false) =>
  statusCommand.run({
    values: { dir },
    positionals: [],
    json,
    log: silentLogger(),
    stdout: process.stdout,
    stderr: process.stderr,
  });

describe('depotsync status --dir D', () => {
  let up: Upstream;
  let dir: string;
  beforeAll(async () => {
    up = await startUpstream();
    await up.publish('app', '1.0', randomBytesSeeded(100_000, 5));
    dir = writeDepotDir(up, { name: 'status-depot' }).dir;
    const depot = openDepot(dir, { logger: silentLogger(), now: up.clock.now });
    await depot.engine.sync();
    await depot.close();
  });
  afterAll(async () => {
    await up?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("shows the depot's own state without asking the master", async () => {
    await up.close(); // the master is gone: the command must not need it
    const out = await run(dir);
    expect(out.human).toMatch(/^depot status-depot: serving generation \d+/);
    expect(out.json).toMatchObject({ role: 'depot', name: 'status-depot', packages: 1, lastError: null });
  });
});
