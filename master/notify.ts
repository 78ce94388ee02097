import { transaction } from './db/database.js';
import { DepotsyncError } from '../src/errors.js';
import { MACHINE_NAME } from '../src/pki/names.js';
import { recordAudit } from './db/audit.js';
import type { MasterDb } from './db/database.js';
import { byName } from './db/machines.js';
import { insertNotifyRequest, type NotifyRequest } from './db/notify-requests.js';

/**
 * `master notify`: ask depots to sync now instead of at their next interval. This runs
 * in its own process, so the request goes through the database: the running `master serve` polls it
 * and sends a `sync-now` event on every depot's event stream (a parent depot relays it to its children).
 * The request and its audit record commit together.
 */
export async function requestSyncNow(
  m: MasterDb,
  input: { depot?: string | undefined; actor: string; address?: string },
): Promise<NotifyRequest> {
  const depot = input.depot ?? null;
  if (depot !== null) {
    if (!MACHINE_NAME.test(depot))
      throw new DepotsyncError('bad-input', `master notify: ${JSON.stringify(depot)} is not a machine name`);
    const machine = await byName(m, depot);
    if (!machine) {
      throw new DepotsyncError('not-found', `master notify: no machine named ${depot}`, {
        hint: 'list the depots with `depotsync status --dir M`; leave out --depot to notify every depot',
      });
    }
    if (machine.role !== 'depot')
      throw new DepotsyncError('bad-input', `master notify: ${depot} is an ${machine.role}, not a depot`, {
        hint: 'agents fetch on demand; notify a depot',
      });
    if (machine.state !== 'approved') {
      throw new DepotsyncError(
        'conflict',
        `master notify: depot ${depot} is ${machine.state}, so it cannot sync`,
        { hint: 'approve it first (depotsync master approve NAME)' },
      );
    }
  }
  return transaction(m, async () => {
    const r = await insertNotifyRequest(m, { depot, by: input.actor });
    await recordAudit(m, {
      actor: input.actor,
      action: 'depot.notify',
      target: depot ?? '*',
      detail: { seq: r.seq },
      ...(input.address ? { address: input.address } : {}),
    });
    return r;
  });
}
