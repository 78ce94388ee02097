import { join, resolve } from 'node:path';

/**
 * Where everything of an agent lives inside its directory A. The machine key is mode 0600.
 *
 *   agent.json        settings (config.ts): name, master URL, root fingerprint, depots, site, fetch limits
 *   keys/             machine key (0600), its CSR, the machine certificate, the master's CA certificate
 *   enroll.json       an enrollment waiting for approval (request id), removed once approved
 *   tuf/              the trusted TUF metadata, one `{role}.json` per role (rollback and freeze baseline)
 *   cache/files-v1/   verified chunks, one file each (fetch/file-cache.ts), so an interrupted fetch
 *                     resumes; size-limited
 *   manifests/        the manifest of each package fetched last (the base of the next one's delta)
 *   state.json        highest generation and root version seen, depot round-trip times, penalties
 *   state.sqlite      the same in agents of earlier versions (carried over once into state.json)
 */
export interface AgentLayout {
  dir: string;
  config: string;
  keysDir: string;
  key: string;
  csr: string;
  cert: string;
  caCert: string;
  enrollment: string;
  tufDir: string;
  cacheDir: string;
  manifestsDir: string;
  state: string;
  legacyState: string;
}

export function agentLayout(dir: string): AgentLayout {
  const d = resolve(dir);
  return {
    dir: d,
    config: join(d, 'agent.json'),
    keysDir: join(d, 'keys'),
    key: join(d, 'keys', 'agent-key.pem'),
    csr: join(d, 'keys', 'agent.csr'),
    cert: join(d, 'keys', 'agent-cert.pem'),
    caCert: join(d, 'keys', 'ca-cert.pem'),
    enrollment: join(d, 'enroll.json'),
    tufDir: join(d, 'tuf'),
    cacheDir: join(d, 'cache'),
    manifestsDir: join(d, 'manifests'),
    state: join(d, 'state.json'),
    legacyState: join(d, 'state.sqlite'),
  };
}
