import type { Database } from 'better-sqlite3';
import { DepotsyncError } from '../src/errors.js';
import { openDatabase, type Migration } from '../src/db/open.js';
import type { Logger } from '../src/log.js';

/** What the agent remembers about one source (depot or master), keyed by its URL. */
export interface SourceHealth {
  url: string;
  /** Last measured round trip of `GET /healthz`; null when the probe failed. */
  rttMs: number | null;
  /** When that probe ran (ms since epoch); 0 = never. */
  probedAtMs: number;
  /** Avoid the source until then (ms since epoch); 0 = not penalised. */
  penaltyUntilMs: number;
  penaltyReason: string | null;
  failures: number;
}

/**
 * The agent's memory across runs: the highest generation and root version it has seen (a second
 * rollback baseline next to the trusted TUF files: a source that serves less is lagging or replaying)
 * and per-source round-trip times and penalties. `MemoryAgentState` for callers without an agent
 * directory (the conformance CLI, tests).
 */
export interface AgentStateStore {
  highest(key: 'generation' | 'root'): number;
  /** Raise the remembered value; never lowers it. */
  raise(key: 'generation' | 'root', value: number): void;
  health(url: string): SourceHealth;
  recordProbe(url: string, rttMs: number | null, atMs: number): void;
  penalize(url: string, untilMs: number, reason: string): void;
  /** A success clears the penalty and the failure count. */
  recordSuccess(url: string): void;
  close(): void;
}

function fresh(url: string): SourceHealth {
  return { url, rttMs: null, probedAtMs: 0, penaltyUntilMs: 0, penaltyReason: null, failures: 0 };
}

export class MemoryAgentState implements AgentStateStore {
  private readonly seen = new Map<string, number>();
  private readonly sources = new Map<string, SourceHealth>();
  highest(key: 'generation' | 'root'): number {
    return this.seen.get(key) ?? 0;
  }
  raise(key: 'generation' | 'root', value: number): void {
    if (value > this.highest(key)) this.seen.set(key, value);
  }
  health(url: string): SourceHealth {
    return { ...(this.sources.get(url) ?? fresh(url)) };
  }
  recordProbe(url: string, rttMs: number | null, atMs: number): void {
    this.sources.set(url, { ...this.health(url), rttMs, probedAtMs: atMs });
  }
  penalize(url: string, untilMs: number, reason: string): void {
    const h = this.health(url);
    this.sources.set(url, {
      ...h,
      penaltyUntilMs: untilMs,
      penaltyReason: reason.slice(0, 500),
      failures: h.failures + 1,
    });
  }
  recordSuccess(url: string): void {
    this.sources.set(url, { ...this.health(url), penaltyUntilMs: 0, penaltyReason: null, failures: 0 });
  }
  close(): void {}
}

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'agent state',
    up: `
      CREATE TABLE seen (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE sources (
        url TEXT PRIMARY KEY,
        rtt_ms INTEGER,
        probed_at_ms INTEGER NOT NULL DEFAULT 0,
        penalty_until_ms INTEGER NOT NULL DEFAULT 0,
        penalty_reason TEXT,
        failures INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;`,
  },
];

/** `A/state.sqlite` (WAL, synchronous=FULL: a raised generation survives power loss). */
export class SqliteAgentState implements AgentStateStore {
  private constructor(private readonly db: Database) {}

  static open(path: string, logger: Logger): SqliteAgentState {
    return new SqliteAgentState(openDatabase(path, { migrations: MIGRATIONS, logger }));
  }

  highest(key: 'generation' | 'root'): number {
    const row = this.db.prepare('SELECT value FROM seen WHERE key = ?').get(key) as
      { value: number } | undefined;
    return row?.value ?? 0;
  }

  raise(key: 'generation' | 'root', value: number): void {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new DepotsyncError('internal', `agent state: ${key} ${value} is not a count`);
    this.db
      .prepare(
        'INSERT INTO seen (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)',
      )
      .run(key, value);
  }

  health(url: string): SourceHealth {
    const r = this.db.prepare('SELECT * FROM sources WHERE url = ?').get(url) as
      | {
          url: string;
          rtt_ms: number | null;
          probed_at_ms: number;
          penalty_until_ms: number;
          penalty_reason: string | null;
          failures: number;
        }
      | undefined;
    if (!r) return fresh(url);
    return {
      url,
      rttMs: r.rtt_ms,
      probedAtMs: r.probed_at_ms,
      penaltyUntilMs: r.penalty_until_ms,
      penaltyReason: r.penalty_reason,
      failures: r.failures,
    };
  }

  recordProbe(url: string, rttMs: number | null, atMs: number): void {
    this.db
      .prepare(
        'INSERT INTO sources (url, rtt_ms, probed_at_ms) VALUES (?, ?, ?) ON CONFLICT (url) DO UPDATE SET rtt_ms = excluded.rtt_ms, probed_at_ms = excluded.probed_at_ms',
      )
      .run(url, rttMs === null ? null : Math.round(rttMs), atMs);
  }

  penalize(url: string, untilMs: number, reason: string): void {
    this.db
      .prepare(
        `INSERT INTO sources (url, penalty_until_ms, penalty_reason, failures) VALUES (?, ?, ?, 1)
         ON CONFLICT (url) DO UPDATE SET penalty_until_ms = excluded.penalty_until_ms, penalty_reason = excluded.penalty_reason, failures = failures + 1`,
      )
      .run(url, untilMs, reason.slice(0, 500));
  }

  recordSuccess(url: string): void {
    this.db
      .prepare('UPDATE sources SET penalty_until_ms = 0, penalty_reason = NULL, failures = 0 WHERE url = ?')
      .run(url);
  }

  close(): void {
    this.db.close();
  }
}
