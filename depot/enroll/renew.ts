import { isIP } from 'node:net';
import { renewIfDue, type RenewOutcome } from '../../src/net/renewal.js';
import type { Depot, DepotCredentials } from '../depot.js';
import { depotCredentialFiles } from './credential-files.js';

/*
 * A serving depot renews its machine certificate before a sync (the rule and the
 * exchange are src/net/renewal.ts, shared with agents): due by age (two thirds of its lifetime), or
 * asked for by the operator (`depotsync master renew DEPOT`, seen through `GET /v1/renew`). After a
 * renewal the depot's clients to the master and its upstream present the new certificate from their
 * next connection, and `onRenewed` hands it to the HTTPS server, which serves agents with it from the
 * next handshake: no restart. The old certificate stays valid until it expires.
 */

/**
 * Renew if due or requested; never throws: a failed check (master unreachable, renewal refused) is
 * logged and the depot goes on with its current certificate, which is still valid. Call it while no
 * sync runs (the clients' connections are replaced).
 */
export async function renewDepotIfDue(
  depot: Depot,
  opts: { now: Date; onRenewed?: (creds: DepotCredentials) => void },
): Promise<RenewOutcome | undefined> {
  const { config, layout, creds } = depot;
  const log = depot.log.child({ component: 'depot.renew' });
  try {
    const out = await renewIfDue({
      master: depot.master,
      name: config.name,
      role: 'depot',
      files: depotCredentialFiles(layout),
      certPem: creds.certPem,
      caPem: creds.caPem,
      dnsNames: config.hosts.filter((h) => isIP(h) === 0),
      ipAddresses: config.hosts.filter((h) => isIP(h) !== 0),
      now: opts.now,
      log,
    });
    if (out.renewed) {
      creds.keyPem = out.keyPem;
      creds.certPem = out.certPem;
      depot.upstream.setCredentials(creds);
      if (depot.master !== depot.upstream) depot.master.setCredentials(creds);
      opts.onRenewed?.(creds);
    }
    return out;
  } catch (e) {
    log.warn(
      { err: (e as Error).message, hint: (e as { hint?: string }).hint },
      'certificate renewal check failed; going on with the current certificate',
    );
    return undefined;
  }
}
