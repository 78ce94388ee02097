import { readTrustedCa } from '../src/net/listener-cert.js';
import { resolveProxy } from '../src/net/proxy.js';
import { existsSync, readFileSync } from 'node:fs';
import type { Logger } from '../src/log.js';
import { HttpClient } from '../src/net/client.js';
import {
  recoverCredentials,
  renewIfDue,
  type CredentialFiles,
  type RenewOutcome,
} from '../src/net/renewal.js';
import { loadAgentConfig } from './config.js';
import { loadAdoptedDirectory } from './directory.js';
import { agentMasterUrls } from './sources.js';
import { agentLayout, type AgentLayout } from './layout.js';

/**
 * An agent renews its machine certificate at the start of each fetch (the rule and the
 * exchange are src/net/renewal.ts, shared with depots): due by age (two thirds of its lifetime), or
 * asked for by the operator (`depotsync master renew AGENT`, seen through `GET /v1/renew` on the master).
 * It runs before the agent directory is opened, so the fetch reads the new key and certificate.
 */
export const AGENT_RENEW_DEFAULTS = {
  /** The master is asked with a short deadline: a fetch from a depot must not wait long for it. */
  timeoutMs: 5_000,
};

export function agentCredentialFiles(layout: AgentLayout): CredentialFiles {
  return { key: layout.key, cert: layout.cert, csr: layout.csr };
}

/**
 * Renew if due or requested. Never throws: a failed check (the master unreachable, the renewal refused
 * for a blocked or revoked agent) is logged and the fetch goes on with the current certificate; a
 * refused agent then gets the depots' own clear refusal.
 */
export async function renewAgentIfDue(
  dir: string,
  log: Logger,
  opts: { now?: Date; timeoutMs?: number } = {},
): Promise<RenewOutcome | undefined> {
  const layout = agentLayout(dir);
  const rlog = log.child({ component: 'agent.renew' });
  try {
    if (!existsSync(layout.config) || (!existsSync(layout.cert) && !existsSync(`${layout.cert}.next`)))
      return undefined; // not enrolled yet
    if (recoverCredentials(agentCredentialFiles(layout)) !== 'none')
      rlog.warn('finished a certificate renewal that a crash interrupted');
    const config = loadAgentConfig(layout.config);
    const tls = {
      caPem: readFileSync(layout.caCert, 'utf8'),
      certPem: readFileSync(layout.cert, 'utf8'),
      keyPem: readFileSync(layout.key, 'utf8'),
      listenerCaPem: readTrustedCa(config.tls?.caFile),
      proxy: resolveProxy('agent.json', { proxy: config.proxy ?? '', noProxy: config.noProxy ?? '' }),
    };
    const [first, ...alternates] = agentMasterUrls(config, loadAdoptedDirectory(dir)?.directory);
    const master = new HttpClient({
      baseUrl: first!,
      alternateUrls: alternates,
      ...tls,
      timeoutMs: opts.timeoutMs ?? AGENT_RENEW_DEFAULTS.timeoutMs,
      logger: log,
    });
    try {
      return await renewIfDue({
        master,
        name: config.name,
        role: 'agent',
        files: agentCredentialFiles(layout),
        certPem: tls.certPem,
        caPem: tls.caPem,
        now: opts.now ?? new Date(),
        log: rlog,
      });
    } finally {
      master.close();
    }
  } catch (e) {
    rlog.warn(
      { err: (e as Error).message, hint: (e as { hint?: string }).hint },
      'certificate renewal check failed; going on with the current certificate',
    );
    return undefined;
  }
}
