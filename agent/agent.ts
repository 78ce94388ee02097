import { readTrustedCa } from '../src/net/listener-cert.js';
import { resolveProxy } from '../src/net/proxy.js';
import { existsSync, readFileSync } from 'node:fs';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { HttpClient } from '../src/net/client.js';
import { DirectoryTrustedStore } from '../src/tuf/client.js';
import { configuredAgentMasterUrls, loadAgentConfig, type AgentConfig } from './config.js';
import { pollAgentEnrollment } from './init.js';
import { agentLayout, type AgentLayout } from './layout.js';
import { RemoteSource, type Source } from './fetch/remote.js';
import { FileAgentState } from './state.js';
import { loadZstdDecoder } from '../src/compress/zstd-decoder.js';
import { checkPrivateFiles } from './windows/acl.js';

/** An initialised, enrolled agent directory, opened for one command. */
export interface AgentContext {
  layout: AgentLayout;
  config: AgentConfig;
  state: FileAgentState;
  store: DirectoryTrustedStore;
  tls: { caPem: string; certPem: string; keyPem: string };
  /** A client for one source: mutual TLS with the agent's certificate, the configured limits. */
  connect(source: Source, opts?: { timeoutMs?: number }): RemoteSource;
  close(): void;
}

/**
 * Open agent directory A. An enrollment still pending is polled once: approved → continue; else a
 * clear error (nothing can be fetched without a certificate).
 */
export async function openAgent(dir: string, log: Logger): Promise<AgentContext> {
  const layout = agentLayout(dir);
  const config = loadAgentConfig(layout.config);
  if (!existsSync(layout.cert) && existsSync(layout.enrollment)) {
    const r = await pollAgentEnrollment(dir, configuredAgentMasterUrls(config), log);
    if (r.state === 'pending') {
      throw new DepotsyncError(
        'forbidden',
        `agent ${config.name}: enrollment request ${r.request} is still waiting for approval`,
        {
          hint: `ask the master operator to run: depotsync master approve --dir M ${config.name}`,
        },
      );
    }
  }
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw fromSystemError(e, `agent ${config.name}: ${path}`);
    }
  };
  // The key (and on Windows the state) readable by more than the agent's owner: refuse (docs/windows-agent.md).
  checkPrivateFiles(process.platform === 'win32' ? [layout.key, layout.state] : [layout.key], log);
  const tls = {
    caPem: read(layout.caCert),
    certPem: read(layout.cert),
    keyPem: read(layout.key),
    listenerCaPem: readTrustedCa(config.tls?.caFile),
  };
  const proxy = resolveProxy('agent.json', { proxy: config.proxy ?? '', noProxy: config.noProxy ?? '' });
  const state = FileAgentState.open(layout.state, log, { legacySqlite: layout.legacyState });
  // Chunks and deltas arrive zstd-compressed: the native decoder where the addon was built, else WebAssembly.
  const zstd = await loadZstdDecoder();
  if (zstd.implementation === 'wasm')
    log.debug({ reason: zstd.nativeError }, 'zstd: decoding with WebAssembly');
  const f = config.fetch;
  return {
    layout,
    config,
    state,
    store: new DirectoryTrustedStore(layout.tufDir),
    tls,
    connect: (source, opts = {}) =>
      new RemoteSource(
        source,
        new HttpClient({
          baseUrl: source.url,
          alternateUrls: source.alternateUrls,
          ...tls,
          proxy,
          ...(source.fromDirectory ? { serverMachine: { name: source.name, role: 'depot' as const } } : {}),
          timeoutMs: opts.timeoutMs ?? f.timeoutMs,
          minBytesPerSecond: f.minBytesPerSecond,
          rateWindowMs: f.rateWindowMs,
          maxSockets: Math.max(8, f.concurrency),
          logger: log,
        }),
      ),
    close: () => state.close(),
  };
}
