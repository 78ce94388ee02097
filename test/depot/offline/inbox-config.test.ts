import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeDepotConfig, DEFAULT_INBOX, loadDepotConfig, saveDepotConfig } from '../../../depot/config.js';
import { openDepot } from '../../../depot/depot.js';
import { depotLayout } from '../../../depot/layout.js';
import { startOfflineHooks } from '../../../depot/offline/service-hooks.js';
import { silentLogger } from '../../../src/log.js';
import { startWorld, type World } from './fixture.js';

const base = { name: 'ship', masterUrl: 'https://master.example:8443', fingerprint: 'a'.repeat(64) };

/** The inbox's settle period comes from depot.json (`inbox.settleMs`, `inbox.stalledMs`). */
describe('inbox timing in depot.json', () => {
  it('defaults, accepts a setting, and names the option it refuses', () => {
    expect(decodeDepotConfig(base).inbox).toEqual(DEFAULT_INBOX);
    expect(DEFAULT_INBOX.settleMs).toBe(5_000);
    expect(decodeDepotConfig({ ...base, inbox: { settleMs: 250 } }).inbox).toEqual({
      settleMs: 250,
      stalledMs: DEFAULT_INBOX.stalledMs,
    });
    expect(() => decodeDepotConfig({ ...base, inbox: { settleMs: 10 } })).toThrow(
      /inbox\.settleMs must be an integer from 100 to 3600000, got 10/,
    );
    expect(() => decodeDepotConfig({ ...base, inbox: { settleMs: '5s' } })).toThrow(
      /inbox: settleMs must be a number, got "5s"/,
    );
    expect(() => decodeDepotConfig({ ...base, inbox: { settleMs: 60_000, stalledMs: 1000 } })).toThrow(
      /inbox\.stalledMs must be an integer from 60000/,
    );
    expect(() => decodeDepotConfig({ ...base, inbox: { settle: 1 } })).toThrow(
      /inbox: unknown setting "settle"/,
    );
  });

  describe('depot serve', () => {
    let w: World;
    beforeAll(async () => {
      w = await startWorld();
    });
    afterAll(async () => {
      await w?.close();
    });

    it('watches the inbox with the settle period of depot.json', async () => {
      const D = await w.newDepot('ship');
      const layout = depotLayout(D);
      const config = loadDepotConfig(layout.config);
      await saveDepotConfig(layout.config, { ...config, inbox: { settleMs: 750, stalledMs: 30_000 } });
      const depot = openDepot(D, { logger: silentLogger() });
      try {
        const hooks = await startOfflineHooks(depot, { logger: silentLogger() });
        try {
          expect(hooks.inbox.settings).toMatchObject({ settleMs: 750, stalledMs: 30_000 });
        } finally {
          await hooks.stop();
        }
      } finally {
        await depot.close();
      }
    });
  });
});
