import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byName } from '../../../master/db/machines.js';
import { approveMachine, blockMachine, revokeMachine } from '../../../master/machines/actions.js';
import { bytesSeeded, startWorld, withDepot, type World } from './fixture.js';

/**
 * An air-gapped depot has no event stream: revocations and blocks reach it with its next bundle, which
 * carries the signed list, and it enforces them from the import on.
 */
describe('offline bundles carry revocations and blocks', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.publish('setup', '1.0', bytesSeeded(200_000, 3));
  }, 120_000);
  afterAll(() => w.close());

  it('a machine revoked, or blocked, at the master is refused by the air-gapped depot after its next import; unblocked after the one after', async () => {
    const D = await w.newDepot('ship');
    await w.newDepot('gone');
    await w.newDepot('held');
    await w.importInto(D, (await w.exportFor('ship')).file);
    const serial = async (name: string) => (await byName(w.master.db, name))!.certSerial!;
    const refused = (name: string) => withDepot(D, async (d) => d.revocations.isRevoked(await serial(name)));
    expect(await refused('gone')).toBe(false);

    await revokeMachine(w.master, 'gone', { actor: 'test' });
    await blockMachine(w.master, 'held', { actor: 'test' });
    expect(await refused('gone')).toBe(false); // not before the bundle arrives
    await w.publish('setup', '1.1', bytesSeeded(200_000, 4));
    await w.importInto(D, (await w.exportFor('ship')).file);
    expect(await refused('gone')).toBe(true);
    expect(await refused('held')).toBe(true);

    await approveMachine(w.master, 'held', { actor: 'test' });
    await w.publish('setup', '1.2', bytesSeeded(200_000, 5));
    await w.importInto(D, (await w.exportFor('ship')).file);
    expect(await refused('held')).toBe(false);
    expect(await refused('gone')).toBe(true);
  }, 120_000);
});
