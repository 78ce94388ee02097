import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { DepotConfig } from '../config.js';
import type { Depot } from '../depot.js';
import type { DepotLayout } from '../layout.js';
import type { SyncResult } from '../sync/engine.js';
import { importFile } from './import.js';
import { INBOX_DEFAULTS, InboxWatcher, type InboxOptions } from './inbox.js';
import { isOfflineDepot } from './offline-mode.js';
import { writeStatusFile } from './status-file.js';

/** An air-gapped depot without its certificate yet cannot serve: say how to finish the enrollment. */
export function checkOfflineReady(layout: DepotLayout, config: DepotConfig): void {
  if (!isOfflineDepot(config) || existsSync(layout.cert)) return;
  throw new DepotsyncError(
    'unauthorized',
    `depot ${config.name}: its offline enrollment waits for the master's reply`,
    {
      hint: `carry ${join(layout.outbox, `enroll-request-${config.name}.json`)} to the master (depotsync master approve --request FILE --out REPLY), then run depotsync depot import --dir ${layout.dir} REPLY`,
    },
  );
}

export interface OfflineHooks {
  /** Replaces the scheduled online sync of an air-gapped depot: a status file into D/outbox/. */
  syncTask?: () => Promise<SyncResult>;
  inbox: InboxWatcher;
  stop(): Promise<void>;
}

/**
 * What `depot serve` adds for offline bundles: the inbox watcher (any depot may import
 * bundles), and for an air-gapped depot a scheduled run that writes its signed status into the outbox
 * instead of syncing with a master it cannot reach.
 */
export async function startOfflineHooks(
  depot: Depot,
  o: { logger: Logger; inbox?: Partial<InboxOptions> },
): Promise<OfflineHooks> {
  const inbox = new InboxWatcher({
    inbox: depot.layout.inbox,
    log: depot.log.child({ component: 'depot.inbox' }),
    importFile: (path) => importFile(depot.layout.dir, path, { logger: o.logger, depot }),
    ...INBOX_DEFAULTS,
    ...depot.config.inbox,
    ...o.inbox,
  });
  await inbox.start();
  const hooks: OfflineHooks = {
    inbox,
    stop: () => inbox.close(),
  };
  if (isOfflineDepot(depot.config)) {
    hooks.syncTask = async () => {
      await writeStatusFile({ ...depot, name: depot.config.name }, { chunks: 0, bytes: 0, now: new Date() });
      const generation = depot.db.served()?.generation ?? 0;
      return {
        generation,
        chunksFetched: 0,
        bytesFetched: 0,
        chunkWireBytes: 0,
        chunkPlainBytes: 0,
        switched: false,
        bytesByStep: {},
        durationMs: 0,
      };
    };
  }
  return hooks;
}
