import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { enrollmentCa, firstContact, FirstContactRootSource } from '../src/net/first-contact.js';
import { checkUrlList } from '../src/net/url-picker.js';
import { MACHINE_NAME } from '../src/pki/names.js';
import { DirectoryTrustedStore, TufClient } from '../src/tuf/client.js';
import { DEFAULT_FETCH_SETTINGS, saveAgentConfig, type AgentConfig, type DepotEntry } from './config.js';
import { caFingerprintOf, pollEnrollment, requestEnrollment, type EnrollOutcome } from './enroll.js';
import { agentLayout } from './layout.js';
import { FileAgentState } from './state.js';
import { restrictAgentDir } from './windows/acl.js';

export interface InitAgentOptions {
  dir: string;
  /** The master, or several masters of one catalog in order of preference (`--master` repeated). */
  masterUrl: string | readonly string[];
  fingerprint: string;
  token?: string | undefined;
  depots?: DepotEntry[];
  site?: string | undefined;
  name?: string | undefined;
  /** The master's CA certificate copied out of band: verifies the first contact too. */
  caPem?: string | undefined;
  caFingerprint?: string | undefined;
  log: Logger;
}

export interface InitAgentResult {
  dir: string;
  name: string;
  state: 'approved' | 'pending';
  request?: string;
  rootVersion: number;
  caFingerprint?: string;
}

/** A machine name from the host name: `agent-<host>`, cut to the allowed alphabet and length. */
export function defaultAgentName(): string {
  const host = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[.-]+/, '');
  return `agent-${host || 'host'}`.slice(0, 64);
}

/**
 * `depotsync agent init`. In this order, so nothing is trusted before the pin is checked:
 *  1. `1.root.json` from the master, accepted only if its SHA-256 is the pinned fingerprint, and kept as
 *     the trusted root (A/tuf/root.json): every later metadata byte chains to it;
 *  2. a new key (never leaves A/keys) and CSR, enrollment with the token (approved at once) or pending
 *     until the operator approves (run `agent init --dir A` again, or `agent fetch`, to collect it);
 *     the reply's CA certificate is checked against the certificate and pinned for TLS
 *     (src/net/first-contact.ts gives the trust argument);
 *  3. agent.json and the state database.
 * Run again on an initialised directory with a pending enrollment, it polls.
 */
export async function initAgent(o: InitAgentOptions): Promise<InitAgentResult> {
  const layout = agentLayout(o.dir);
  if (existsSync(layout.config)) {
    throw new DepotsyncError('already-exists', `${layout.dir} already holds an agent (agent.json exists)`, {
      hint: existsSync(layout.enrollment)
        ? `its enrollment is pending: run depotsync agent init --dir ${o.dir} (without other flags) to check`
        : 'choose an empty directory',
    });
  }
  const masters = checkUrlList(
    typeof o.masterUrl === 'string' ? [o.masterUrl] : o.masterUrl,
    'agent init: --master',
    'usage',
  ).map((u) => u.replace(/\/+$/, ''));
  const fingerprint = o.fingerprint.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
    throw new DepotsyncError(
      'usage',
      `agent init: --fingerprint must be 64 hex digits (SHA-256 of 1.root.json), got ${JSON.stringify(o.fingerprint)}`,
    );
  }
  const name = o.name ?? defaultAgentName();
  if (!MACHINE_NAME.test(name))
    throw new DepotsyncError(
      'usage',
      `agent init: --name ${JSON.stringify(name)} is not a machine name (letters, digits, . _ -)`,
    );
  await mkdir(layout.dir, { recursive: true, mode: 0o700 }).catch((e: unknown) =>
    Promise.reject(fromSystemError(e, layout.dir)),
  );
  // Before the key and state exist, so they inherit SYSTEM + Administrators only (Windows).
  restrictAgentDir(layout.dir);

  const contact = firstContact(masters, o.caPem);
  let outcome: EnrollOutcome;
  let rootVersion: number;
  let enrollCa: string;
  try {
    // 1. The pinned root first (wrong-root attack: never trust whichever server answers).
    const client = await TufClient.open({
      source: new FirstContactRootSource(contact),
      store: new DirectoryTrustedStore(layout.tufDir),
      fingerprint,
      logger: o.log,
    });
    rootVersion = client.rootVersion;
    // The signed root names the master's CA (man in the middle at enrollment: the token goes nowhere else).
    enrollCa = enrollmentCa(
      client.trusted.root.md.signed,
      { caPem: o.caPem, caFingerprint: o.caFingerprint },
      'agent init',
    );
  } finally {
    contact.close();
  }
  // 2. Key, CSR, enrollment, over TLS verified against that CA.
  const enrollContact = firstContact(masters, enrollCa);
  try {
    outcome = await requestEnrollment({
      layout,
      name,
      contact: enrollContact,
      token: o.token,
      site: o.site,
      caFingerprint: caFingerprintOf(enrollCa),
      log: o.log,
    });
  } finally {
    enrollContact.close();
  }
  // 3. Settings and state.
  const config: AgentConfig = {
    format: 1,
    name,
    masterUrl: masters[0]!,
    ...(masters.length > 1 ? { masterUrls: masters } : {}),
    fingerprint,
    ...(o.site ? { site: o.site } : {}),
    depots: o.depots ?? [],
    fetch: { ...DEFAULT_FETCH_SETTINGS },
  };
  await saveAgentConfig(layout.config, config);
  const state = FileAgentState.open(layout.state, o.log, { legacySqlite: layout.legacyState });
  try {
    state.raise('root', rootVersion);
  } finally {
    state.close();
  }
  return {
    dir: layout.dir,
    name,
    state: outcome.state,
    rootVersion,
    ...(outcome.state === 'pending'
      ? { request: outcome.request }
      : { caFingerprint: outcome.caFingerprint }),
  };
}

/** `agent init --dir A` on an agent whose enrollment is pending: ask the master again. */
export async function pollAgentEnrollment(
  dir: string,
  masterUrls: string | readonly string[],
  log: Logger,
): Promise<EnrollOutcome> {
  const layout = agentLayout(dir);
  const contact = firstContact(
    masterUrls,
    existsSync(layout.caCert) ? readFileSync(layout.caCert, 'utf8') : undefined,
  );
  try {
    return await pollEnrollment({ layout, contact, log });
  } finally {
    contact.close();
  }
}
