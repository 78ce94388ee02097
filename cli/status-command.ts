import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DepotsyncError } from '../src/errors.js';
import { requireString } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';

/**
 * `depotsync status --dir M|D [--json]`: on a master directory the fleet status model (the same as
 * `GET /v1/admin/status`), as tables; on a depot directory the depot's own state, without the master.
 * Read-only, and safe while the master or depot serves (SQLite WAL readers never block).
 */
export const statusCommand: Command = {
  path: ['status'],
  usage: 'status --dir M|D [--json]',
  summary: "the fleet's sync status (master directory) or a depot's own state (depot directory)",
  options: { dir: { type: 'string' } },
  async run(c) {
    const dir = requireString(c.values, 'dir', 'status');
    if (existsSync(join(dir, 'master.json'))) return masterStatus(dir);
    if (existsSync(join(dir, 'depot.json'))) {
      const { depotStatus, depotStatusLines } = await import('../depot/status.js');
      const s = await depotStatus(dir);
      return { json: s, human: depotStatusLines(s) };
    }
    throw new DepotsyncError(
      'not-found',
      `${dir} is neither a master directory (master.json) nor a depot directory (depot.json)`,
      {
        hint: 'give the directory made by `depotsync master init` or `depotsync depot init`',
      },
    );
  },
};

async function masterStatus(dir: string) {
  const { silentLogger } = await import('../src/log.js');
  const { masterLayout } = await import('../master/layout.js');
  const { loadMasterConfig } = await import('../master/config.js');
  const { openMasterDatabase } = await import('../master/db/database.js');
  const { loadAdminSettings } = await import('../master/admin/config.js');
  const { ownCertificates } = await import('../master/admin/certificates.js');
  const { buildFleetStatus } = await import('../master/admin/status-model.js');
  const { fleetTables } = await import('../master/admin/status-text.js');
  const layout = masterLayout(dir);
  const config = loadMasterConfig(layout.config);
  const db = openMasterDatabase(layout.database, { logger: silentLogger() });
  try {
    const status = await buildFleetStatus({
      db,
      settings: loadAdminSettings(layout.dir),
      masterName: config.name,
      ownCertificates: ownCertificates(layout),
    });
    return { json: status, human: fleetTables(status) };
  } finally {
    await db.close();
  }
}
