import type { DepotDirectory } from '../src/wire/depot-directory.js';
import { configuredAgentMasterUrls, type AgentConfig } from './config.js';
import { unionUrls } from '../src/net/url-picker.js';
import type { AgentStateStore, SourceHealth } from './state.js';
import type { Source } from './fetch/remote.js';

/** A source in the agent's order of preference, with the reasons for its place. */
export interface RankedSource extends Source {
  /**
   * Where the agent learnt of it: a `--depot` flag (agent.json), the signed depot directory, or the master.
   */
  origin: SourceOrigin;
  rank: number;
  rttMs: number | null;
  /** Penalised until then (ISO time), or null. */
  penalizedUntil: string | null;
  reasons: string[];
}

export interface RankOptions {
  config: Pick<AgentConfig, 'masterUrl' | 'masterUrls' | 'depots' | 'site'> & {
    fetch: { rttTtlMs: number; probeTimeoutMs: number };
  };
  state: AgentStateStore;
  now: () => Date;
  /** Round trip of `GET /healthz` in ms (throws when unreachable). Absent: no probing, cached values only. */
  probe?: (source: Source, timeoutMs: number) => Promise<number>;
  /** The adopted signed depot directory (agent/directory.ts); its depots follow the flagged ones. */
  directory?: DepotDirectory | undefined;
}

export type SourceOrigin = 'flag' | 'directory' | 'master';

/**
 * The sources: the `--depot` depots in configuration order, then the directory's depots that no flag
 * already names (by name or URL: the operator of this computer chose that one), then the master.
 * A directory depot must present its own machine certificate (`fromDirectory`).
 */
export function configuredSources(
  config: RankOptions['config'],
  directory?: DepotDirectory,
): Array<Source & { origin: SourceOrigin }> {
  const flagged = config.depots.map((d) => ({
    name: d.name,
    url: d.url,
    kind: 'depot' as const,
    origin: 'flag' as const,
    ...(d.site ? { site: d.site } : {}),
  }));
  const taken = new Set(flagged.flatMap((d) => [`name:${d.name}`, `url:${d.url}`]));
  const listed = (directory?.depots ?? [])
    .filter((d) => !taken.has(`name:${d.name}`) && !taken.has(`url:${d.url}`))
    .map((d) => ({
      name: d.name,
      url: d.url,
      kind: 'depot' as const,
      origin: 'directory' as const,
      fromDirectory: true,
      ...(d.site ? { site: d.site } : {}),
    }));
  const [first, ...alternates] = agentMasterUrls(config, directory);
  return [
    ...flagged,
    ...listed,
    {
      name: 'master',
      url: first!,
      kind: 'master',
      origin: 'master',
      ...(alternates.length ? { alternateUrls: alternates } : {}),
    },
  ];
}

/** The master URLs an agent uses, in order: configured (`--master`), then the signed directory's. */
export function agentMasterUrls(
  config: Pick<AgentConfig, 'masterUrl' | 'masterUrls'>,
  directory?: DepotDirectory,
): string[] {
  return unionUrls(configuredAgentMasterUrls(config), directory?.masterUrls ?? []);
}

/**
 * Depot choice (docs/architecture.md). Order, most preferred first:
 *  1. sources not penalised before penalised ones (a source that failed verification or errored is
 *     avoided for `penaltyMs`, but stays a last resort rather than none at all);
 *  2. depots before the master (the master is the final fallback);
 *  3. depots of the agent's own site before others;
 *  4. depots given with `--depot` before those only the signed directory lists;
 *  5. reachable before unreachable (last probe failed), then by measured round-trip time;
 *  6. configuration order.
 * Round-trip times come from parallel `/healthz` probes, reused for `rttTtlMs` (kept in the state).
 */
export async function rankSources(o: RankOptions): Promise<RankedSource[]> {
  const sources = configuredSources(o.config, o.directory);
  const inDirectory = new Set((o.directory?.depots ?? []).map((d) => d.name));
  const nowMs = o.now().getTime();
  const ttl = o.config.fetch.rttTtlMs;
  if (o.probe) {
    const probe = o.probe;
    const stale = sources.filter(
      (s) => s.kind === 'depot' && nowMs - o.state.health(s.url).probedAtMs >= ttl,
    );
    await Promise.all(
      stale.map(async (s) => {
        const rtt = await probe(s, o.config.fetch.probeTimeoutMs).catch(() => null);
        o.state.recordProbe(s.url, rtt, nowMs);
      }),
    );
  }
  const rows = sources.map((s, order) => {
    const h: SourceHealth = o.state.health(s.url);
    const penalized = h.penaltyUntilMs > nowMs;
    const probed = h.probedAtMs > 0;
    const reachable = !probed || h.rttMs !== null;
    const sameSite = s.kind === 'depot' && o.config.site !== undefined && s.site === o.config.site;
    const reasons: string[] = [];
    // Where a depot came from matters only once the directory lists depots.
    if (inDirectory.size && s.origin !== 'master') {
      const flagged = inDirectory.has(s.name)
        ? 'from --depot (the directory lists it too; the flag wins)'
        : 'from --depot';
      reasons.push(
        s.origin === 'flag' ? flagged : `from the signed depot directory v${o.directory?.version}`,
      );
    }
    if (s.kind === 'master') reasons.push('the master: final fallback');
    else if (o.config.site !== undefined)
      reasons.push(sameSite ? `same site (${s.site})` : `other site (${s.site ?? 'none'})`);
    if (probed)
      reasons.push(
        h.rttMs === null ? 'unreachable at the last probe' : `round trip ${Math.round(h.rttMs)} ms`,
      );
    else if (s.kind === 'depot') reasons.push('not probed');
    if (penalized)
      reasons.push(
        `penalised until ${new Date(h.penaltyUntilMs).toISOString()}: ${h.penaltyReason ?? 'failed'}`,
      );
    const key = [
      penalized ? 1 : 0,
      s.kind === 'master' ? 1 : 0,
      sameSite ? 0 : 1,
      s.origin === 'directory' ? 1 : 0,
      reachable ? 0 : 1,
      h.rttMs ?? Number.MAX_SAFE_INTEGER,
      order,
    ];
    return { s, h, key, reasons, penalized };
  });
  rows.sort((a, b) => {
    for (let i = 0; i < a.key.length; i++)
      if (a.key[i] !== b.key[i]) return (a.key[i] as number) - (b.key[i] as number);
    return 0;
  });
  return rows.map((r, i) => ({
    ...r.s,
    rank: i + 1,
    rttMs: r.h.rttMs === null ? null : Math.round(r.h.rttMs),
    penalizedUntil: r.penalized ? new Date(r.h.penaltyUntilMs).toISOString() : null,
    reasons: r.reasons,
  }));
}
