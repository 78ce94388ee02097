import { decodeListenerTls } from '../src/net/listener-cert.js';
import { proxyOption } from '../src/net/proxy.js';
import { readJsonFile } from '../src/config/json-file.js';
import { intOption, mergeDefaults } from '../src/config/validate.js';
import { DepotsyncError } from '../src/errors.js';
import { writeFileAtomic } from '../src/fs/atomic-write.js';
import { HTTPS_URL_PATTERN, refusePlainHttp } from '../src/net/https-url.js';
import { checkUrlList } from '../src/net/url-picker.js';
import { MACHINE_NAME } from '../src/pki/names.js';
import { Fields } from '../src/wire/decode.js';

/** A depot the agent may fetch from. `site` is matched against the agent's own site first. */
export interface DepotEntry {
  name: string;
  url: string;
  site?: string;
}

/** How the agent downloads (units in the names). */
export interface FetchSettings {
  /** Chunk batches downloaded at the same time. */
  concurrency: number;
  /** Chunk bytes asked for in one `POST /v1/chunks/batch`. */
  batchMaxBytes: number;
  /** Chunk ids in one batch (the server's limit is 4096). */
  batchMaxChunks: number;
  /** Network silence after which a request fails (slow-retrieval defence, with the rate below). */
  timeoutMs: number;
  /** Fewer bytes than this per second over `rateWindowMs` fails the request (slow retrieval). */
  minBytesPerSecond: number;
  rateWindowMs: number;
  /** Longest one chunk batch may take from request to last byte (slow retrieval, with the rate above). */
  requestTimeoutMs: number;
  /** Verified chunks kept for resuming; over this, gc keeps only the last package's chunks. 0 = no cache. */
  cacheMaxBytes: number;
  /** A source that failed verification or errored is avoided this long. */
  penaltyMs: number;
  /** Measured round-trip times are reused this long before the depots are probed again. */
  rttTtlMs: number;
  /** Deadline of one `/healthz` probe. */
  probeTimeoutMs: number;
}

export const DEFAULT_FETCH_SETTINGS: FetchSettings = {
  concurrency: 4,
  batchMaxBytes: 8 * 1024 * 1024,
  batchMaxChunks: 1024,
  timeoutMs: 30_000,
  minBytesPerSecond: 16 * 1024,
  rateWindowMs: 10_000,
  requestTimeoutMs: 300_000,
  cacheMaxBytes: 2 * 1024 * 1024 * 1024,
  penaltyMs: 10 * 60_000,
  rttTtlMs: 10 * 60_000,
  probeTimeoutMs: 3_000,
};

export interface AgentConfig {
  format: 1;
  name: string;
  /** The master (the preferred one when there are several). */
  masterUrl: string;
  /**
   * Several masters of one catalog, in order of preference (`--master` repeated): the first is
   * `masterUrl`; requests fail over to the next (src/net/url-picker.ts). Absent when there is one.
   */
  masterUrls?: string[];
  /** Hex SHA-256 of the master's 1.root.json: the only trust anchor of the catalog. */
  fingerprint: string;
  /** This computer's site: depots of the same site are preferred. */
  site?: string;
  depots: DepotEntry[];
  fetch: FetchSettings;
  /** HTTP proxy: absent or '' = HTTPS_PROXY, 'direct' = none, or http://HOST:PORT (docs/operations.md). */
  proxy?: string;
  /** Hosts reached without the proxy (NO_PROXY syntax), besides the NO_PROXY environment variable. */
  noProxy?: string;
  /** `caFile`: the organisation's CA bundle, trusted for listeners with an operator certificate. */
  tls?: { caFile: string };
}

export function checkFetchSettings(where: string, s: FetchSettings): FetchSettings {
  intOption(where, 'concurrency', s.concurrency, 1, 64);
  intOption(where, 'batchMaxBytes', s.batchMaxBytes, 256 * 1024, 256 * 1024 * 1024);
  intOption(where, 'batchMaxChunks', s.batchMaxChunks, 1, 4096);
  intOption(where, 'timeoutMs', s.timeoutMs, 1, 3_600_000);
  intOption(where, 'minBytesPerSecond', s.minBytesPerSecond, 0, 2 ** 40);
  intOption(where, 'rateWindowMs', s.rateWindowMs, 1, 3_600_000);
  intOption(where, 'requestTimeoutMs', s.requestTimeoutMs, 1, 24 * 3_600_000);
  intOption(where, 'cacheMaxBytes', s.cacheMaxBytes, 0, 2 ** 50);
  intOption(where, 'penaltyMs', s.penaltyMs, 0, 2 ** 40);
  intOption(where, 'rttTtlMs', s.rttTtlMs, 0, 2 ** 40);
  intOption(where, 'probeTimeoutMs', s.probeTimeoutMs, 1, 600_000);
  return s;
}

/** Decode agent.json at the border: every bad field named at once. */
export function decodeAgentConfig(value: unknown, what = 'agent.json'): AgentConfig {
  refusePlainHttp((value as { masterUrl?: unknown } | null)?.masterUrl, `${what}: masterUrl`);
  const listed = (value as { masterUrls?: unknown } | null)?.masterUrls;
  const f = Fields.of(what, value);
  f.int('format', { min: 1, max: 1 });
  const name = f.string('name', { max: 64, pattern: MACHINE_NAME });
  const masterUrl = f.string('masterUrl', { max: 512, pattern: HTTPS_URL_PATTERN });
  const fingerprint = f.string('fingerprint', { pattern: /^[0-9a-f]{64}$/ });
  const site = f.optionalString('site', { max: 64, pattern: MACHINE_NAME });
  const proxy = f.optionalString('proxy', { max: 512 });
  const noProxy = f.optionalString('noProxy', { max: 4096 });
  f.done();
  if (proxy !== undefined) proxyOption(what, proxy);
  const v = value as Record<string, unknown>;
  let masterUrls: string[] | undefined;
  if (listed !== undefined) {
    masterUrls = checkUrlList(listed as string[], `${what}: masterUrls`).map((u) => u.replace(/\/+$/, ''));
    if (masterUrls[0] !== masterUrl.replace(/\/+$/, ''))
      throw new DepotsyncError(
        'bad-input',
        `${what}: masterUrls must start with masterUrl ${JSON.stringify(masterUrl)}, got ${JSON.stringify(listed)}`,
        { hint: 'list every master in masterUrls, the preferred first, and repeat the first as masterUrl' },
      );
  }
  if (!Array.isArray(v.depots)) throw new DepotsyncError('bad-input', `${what}: depots: expected an array`);
  const depots = v.depots.map((d, i) => decodeDepotEntry(d, `${what}: depots[${i}]`));
  const names = new Set<string>();
  for (const d of depots) {
    if (names.has(d.name))
      throw new DepotsyncError('bad-input', `${what}: depot name ${JSON.stringify(d.name)} appears twice`);
    names.add(d.name);
  }
  const fetch = checkFetchSettings(
    `${what}: fetch`,
    mergeDefaults(`${what}: fetch`, DEFAULT_FETCH_SETTINGS, v.fetch),
  );
  const caFile = decodeListenerTls(what, v.tls, ['caFile']).caFile;
  return {
    format: 1,
    name,
    masterUrl,
    ...(masterUrls && masterUrls.length > 1 ? { masterUrls } : {}),
    fingerprint,
    ...(site ? { site } : {}),
    depots,
    fetch,
    ...(proxy ? { proxy } : {}),
    ...(noProxy ? { noProxy } : {}),
    ...(caFile ? { tls: { caFile } } : {}),
  };
}

export function decodeDepotEntry(
  value: unknown,
  what: string,
  code: 'bad-input' | 'usage' = 'bad-input',
): DepotEntry {
  refusePlainHttp((value as { url?: unknown } | null)?.url, `${what}: url`, code);
  const f = Fields.of(what, value);
  const name = f.string('name', { max: 64, pattern: MACHINE_NAME });
  const url = f.string('url', { max: 512, pattern: HTTPS_URL_PATTERN });
  const site = f.optionalString('site', { max: 64, pattern: MACHINE_NAME });
  f.done();
  return { name, url: url.replace(/\/+$/, ''), ...(site ? { site } : {}) };
}

/**
 * A `--depot` flag: `URL`, `NAME=URL` or `NAME@SITE=URL`. Without a name, the depot is named after
 * its host and port.
 */
export function parseDepotFlag(text: string): DepotEntry {
  const m = /^(?:([^=@\s]+)(?:@([^=\s]+))?=)?(\S+)$/.exec(text);
  const url = m?.[3] ?? '';
  let host = '';
  try {
    host = new URL(url).host;
  } catch {
    throw new DepotsyncError(
      'usage',
      `--depot ${JSON.stringify(text)}: expected URL, NAME=URL or NAME@SITE=URL`,
    );
  }
  const name = m?.[1] ?? host.replace(/[^A-Za-z0-9._-]/g, '-');
  return decodeDepotEntry({ name, url, ...(m?.[2] ? { site: m[2] } : {}) }, `--depot ${text}`, 'usage');
}

/** Every configured master URL, the preferred first. */
export function configuredAgentMasterUrls(c: Pick<AgentConfig, 'masterUrl' | 'masterUrls'>): string[] {
  return c.masterUrls ?? [c.masterUrl];
}

export function loadAgentConfig(path: string): AgentConfig {
  const value = readJsonFile(path, {
    what: 'agent config',
    missing: {
      message: `${path}: not an agent directory (no agent.json)`,
      hint: 'create one with: depotsync agent init --dir A --master URL --fingerprint FP',
    },
    badJson: (reason) => ({ message: `${path}: not JSON (${reason})` }),
  });
  return decodeAgentConfig(value, path);
}

export async function saveAgentConfig(path: string, config: AgentConfig): Promise<void> {
  decodeAgentConfig(JSON.parse(JSON.stringify(config)), path);
  await writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`);
}
