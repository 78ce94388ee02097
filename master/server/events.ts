import type { Logger } from '../../src/log.js';
import { EventHub, type EventFeed, type EventHubOptions } from '../../src/serve/events.js';
import type { MasterDb } from '../db/database.js';
import { currentGeneration } from '../db/generations.js';
import { lastNotifySeq, notifyRequestsAfter } from '../db/notify-requests.js';

/**
 * What the master's event streams announce. `master publish` and `master notify` run
 * as other processes and commit to the database, so the serving master learns of them by polling it:
 * `max(generation)` and `notify_requests WHERE seq > ?` both read a primary key, a few microseconds
 * each, once per `pollMs` and only while a depot is listening. A generation and its signed metadata
 * commit in one transaction, so an announced generation is always fully served already.
 */
export function masterEventFeed(db: MasterDb, revocations?: () => number | undefined): EventFeed {
  // Requests made before the first poll are not replayed (read lazily: creating the feed does no query).
  let seenSeq: number | undefined;
  return {
    generation: () => currentGeneration(db),
    ...(revocations ? { revocations } : {}),
    async syncRequests() {
      seenSeq ??= await lastNotifySeq(db);
      const rows = await notifyRequestsAfter(db, seenSeq);
      const last = rows[rows.length - 1];
      if (last) seenSeq = last.seq;
      return rows.map((r) => ({ seq: r.seq, depot: r.depot }));
    },
    async skipPendingRequests() {
      // Nobody was listening: a request made then is not replayed to the next depot that connects
      // (it checks the generation on connect anyway).
      seenSeq = await lastNotifySeq(db);
    },
  };
}

/** `revocations`: the signed list's version (master/revocations.ts), announced to depots on change. */
export function masterEventHub(
  db: MasterDb,
  log: Logger,
  options: Partial<EventHubOptions> & {
    clockMs?: () => number;
    autoPoll?: boolean;
    revocations?: () => number | undefined;
  } = {},
): EventHub {
  const { revocations, ...rest } = options;
  return new EventHub(masterEventFeed(db, revocations), { log, ...rest });
}
