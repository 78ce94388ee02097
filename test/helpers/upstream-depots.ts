import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { openDepot, type Depot, type OpenDepotOptions } from '../../depot/depot.js';
import { startUpstream, writeDepotDir, type Upstream } from '../depot/fixture.js';

export interface DepotOptions extends Partial<OpenDepotOptions> {
  /** Machine name of the depot (default `depot-1`). */
  name?: string;
  /** Another fake master to enroll at instead of the shared one. */
  upstream?: Upstream;
}

/**
 * The hooks of a describe block whose depots sync from one fake master: the master starts before the
 * block (handed to `started`) and stops after it; after each test every depot opened is closed, its
 * folder removed and the master's faults cleared. Returns the function that opens a fresh depot.
 */
export function useUpstreamDepots(started: (up: Upstream) => void): (opts?: DepotOptions) => Depot {
  let up: Upstream;
  const depots: Depot[] = [];
  const dirs: string[] = [];
  beforeAll(async () => {
    up = await startUpstream();
    started(up);
  });
  afterAll(async () => {
    await up.close();
  });
  afterEach(async () => {
    for (const d of depots.splice(0)) await d.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    up.faults.corrupt.clear();
    up.faults.missingTargets.clear();
    up.faults.down = false;
    up.faults.batch = undefined;
    up.faults.delta = undefined;
    up.faults.targetDelta = undefined;
    up.zstd.source = undefined;
  });
  return ({ name, upstream = up, ...options } = {}) => {
    const files = writeDepotDir(upstream, name ? { name } : {});
    dirs.push(files.dir);
    const d = openDepot(files.dir, {
      logger: silentLogger(),
      now: upstream.clock.now,
      sleep: async () => {},
      ...options,
    });
    depots.push(d);
    return d;
  };
}
