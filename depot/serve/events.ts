import type { Logger } from '../../src/log.js';
import { EventHub, type EventHubOptions } from '../../src/serve/events.js';
import type { DepotDb } from '../db/depot-db.js';

/**
 * A depot's own event streams, for its child depots and agents (tiers): the generation
 * it serves, read from its database (a switch by `depot serve` or by `depot sync` in another process
 * lands there; the service also announces its own switches at once), the version of the revocation list
 * it enforces (so a revocation goes down every tier within seconds), and the sync-now requests it relays
 * from its upstream.
 */
export function depotEventHub(
  db: DepotDb,
  log: Logger,
  options: Partial<EventHubOptions> & { clockMs?: () => number; autoPoll?: boolean } = {},
): EventHub {
  const feed = { generation: () => db.served()?.generation, revocations: () => db.revocationsVersion() };
  return new EventHub(feed, { log, ...options });
}
