import type { DepotConfig } from '../config.js';

/**
 * An air-gapped depot has no line to the master: depot.json names this placeholder as its master and
 * upstream (`.invalid` never resolves, RFC 2606), so no code path can reach a network master by mistake;
 * its catalog arrives by bundle, its status leaves by file.
 */
export const OFFLINE_MASTER_URL = 'https://offline.invalid';

export function isOfflineDepot(config: Pick<DepotConfig, 'masterUrl'>): boolean {
  return config.masterUrl === OFFLINE_MASTER_URL;
}
