import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { requireHttpsUrl } from '../src/net/https-url.js';
import { checkUrlList } from '../src/net/url-picker.js';
import { MACHINE_NAME } from '../src/pki/names.js';
import { TufClient } from '../src/tuf/client.js';
import { newDepotConfig, saveDepotConfig } from './config.js';
import { DepotDb } from './db/depot-db.js';
import { DbTrustedStore } from './db/trusted-store.js';
import { pollEnrollment, requestEnrollment, type EnrollOutcome } from './enroll/enroll.js';
import { enrollmentCa, firstContact, FirstContactRootSource } from './enroll/first-contact.js';
import { depotLayout } from './layout.js';

export interface InitDepotOptions {
  dir: string;
  /** The master, or several masters of one catalog in order of preference (`--master` repeated). */
  masterUrl: string | readonly string[];
  fingerprint: string;
  token?: string | undefined;
  name?: string | undefined;
  /** Sync from this parent depot instead of the master (tiers). */
  parentUrl?: string | undefined;
  listen?: string | undefined;
  hosts?: string[] | undefined;
  /** The master's CA certificate file, copied out of band: verifies the first contact too. */
  caFile?: string | undefined;
  caFingerprint?: string | undefined;
  /** Wait (polling) until the operator approves, at most this long; 0 = do not wait. */
  waitMs?: number;
  pollMs?: number;
  log: Logger;
  sleep?: (ms: number) => Promise<void>;
}

export interface InitDepotResult {
  dir: string;
  name: string;
  state: 'approved' | 'pending';
  rootFingerprint: string;
  rootVersion: number;
  caFingerprint?: string;
  request?: string;
}

function defaultName(): string {
  const h = hostname().split('.')[0] ?? 'depot';
  return MACHINE_NAME.test(h) ? h : 'depot';
}

/**
 * `depot init`: pin the root fingerprint and verify 1.root.json against it before anything else,
 * write depot.json, make the key and CSR, enroll (at once with a token, else pending approval; `depot
 * serve` finishes a pending enrollment). A failure before enrollment removes what it created.
 */
export async function initDepot(o: InitDepotOptions): Promise<InitDepotResult> {
  const layout = depotLayout(o.dir);
  const masters = checkUrlList(
    typeof o.masterUrl === 'string' ? [o.masterUrl] : o.masterUrl,
    'depot init: --master',
    'usage',
  );
  const masterUrl = masters[0]!;
  if (o.parentUrl !== undefined) requireHttpsUrl(o.parentUrl, 'depot init: --parent');
  const fingerprint = o.fingerprint.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
    throw new DepotsyncError(
      'usage',
      `depot init: --fingerprint must be the 64 hex digits of SHA-256(1.root.json), got ${JSON.stringify(o.fingerprint)}`,
      {
        hint: '`depotsync master init` printed it',
      },
    );
  }
  if (existsSync(layout.config)) {
    throw new DepotsyncError(
      'already-exists',
      `depot init: ${layout.config} exists; this directory is already a depot`,
      { hint: 'use another --dir, or remove the directory to start over' },
    );
  }
  const name = o.name ?? defaultName();
  if (!MACHINE_NAME.test(name))
    throw new DepotsyncError(
      'usage',
      `depot init: --name ${JSON.stringify(name)} must be 1-64 letters, digits, ".", "_" or "-"`,
    );
  const caPem = o.caFile ? readCa(o.caFile) : undefined;
  const created = !existsSync(layout.dir);
  const listen = o.listen ?? '0.0.0.0:8443';
  const hosts = o.hosts?.length ? o.hosts : ['localhost', '127.0.0.1'];
  const config = newDepotConfig({
    name,
    masterUrl,
    ...(masters.length > 1 ? { masterUrls: masters } : {}),
    upstreamUrl: o.parentUrl ?? masterUrl,
    fingerprint,
    listen,
    hosts,
  });
  try {
    for (const d of [layout.dir, layout.inbox, layout.outbox]) mkdirSync(d, { recursive: true });
    mkdirSync(layout.tlsDir, { recursive: true, mode: 0o700 });
    // 1. Trust anchor first: 1.root.json must hash to the pinned fingerprint (TufClient.open checks it).
    const db = DepotDb.open(layout.database, o.log);
    let rootVersion: number;
    let enrollCa: string;
    const contact = firstContact(masters, caPem);
    try {
      const client = await TufClient.open({
        fingerprint,
        source: new FirstContactRootSource(contact),
        store: new DbTrustedStore(db),
        logger: o.log,
      });
      rootVersion = client.rootVersion;
      // The signed root names the master's CA: enrollment (and its token) goes only to a server of that CA.
      enrollCa = enrollmentCa(
        client.trusted.root.md.signed,
        { caPem, caFingerprint: o.caFingerprint },
        'depot init',
      );
    } finally {
      contact.close();
      db.close();
    }
    await saveDepotConfig(layout.config, config);
    // 2. Enrollment.
    const port = listen.slice(listen.lastIndexOf(':') + 1);
    const publicHost = hosts.find((h) => h !== 'localhost' && h !== '127.0.0.1' && h !== '::1') ?? hosts[0]!;
    let outcome: EnrollOutcome = await requestEnrollment({
      layout,
      name,
      masterUrl: masters,
      hosts,
      token: o.token,
      url:
        port !== '0'
          ? `https://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${port}`
          : undefined,
      caPem: enrollCa,
      log: o.log,
    });
    const deadline = Date.now() + (o.waitMs ?? 0);
    while (outcome.state === 'pending' && Date.now() < deadline) {
      await (o.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms))))(o.pollMs ?? 5000);
      outcome = await pollEnrollment(layout, o.log, (url) => firstContact(url, enrollCa));
    }
    const result: InitDepotResult = {
      dir: layout.dir,
      name,
      state: outcome.state,
      rootFingerprint: fingerprint,
      rootVersion,
    };
    if (outcome.state === 'approved') result.caFingerprint = outcome.caFingerprint;
    else result.request = outcome.request;
    return result;
  } catch (e) {
    // Nothing half-made stays behind: the next `depot init` starts clean. (A pending enrollment is kept.)
    if (!existsSync(layout.enrollment) && !existsSync(layout.cert)) {
      if (created) rmSync(layout.dir, { recursive: true, force: true });
      else
        for (const p of [layout.config, layout.database, `${layout.database}-wal`, `${layout.database}-shm`])
          rmSync(p, { force: true });
    }
    throw e;
  }
}

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `CA certificate ${path}`);
  }
}
