import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import { writeFileAtomicSync } from '../src/fs/atomic-write.js';
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

/** The state file's format; another number is refused (a newer agent wrote it). */
const STATE_FORMAT = 1;

interface StateFile {
  format: number;
  seen: { generation: number; root: number };
  sources: Record<string, Omit<SourceHealth, 'url'>>;
}

function emptyState(): StateFile {
  return { format: STATE_FORMAT, seen: { generation: 0, root: 0 }, sources: {} };
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function entry(s: StateFile, url: string): Omit<SourceHealth, 'url'> {
  return (
    s.sources[url] ?? { rttMs: null, probedAtMs: 0, penaltyUntilMs: 0, penaltyReason: null, failures: 0 }
  );
}

/** Strict decoding: a value of the wrong type is refused rather than guessed. */
function decodeState(text: string, path: string): StateFile {
  const bad = (why: string) =>
    new DepotsyncError('corrupt', `agent state ${path}: ${why}`, {
      hint:
        'the file is written atomically, so this is damage from outside: remove it and run the command ' +
        'again (the rollback baseline stays in tuf/; round-trip times are measured again)',
    });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw Object.assign(bad(`not JSON (${(e as Error).message})`), { cause: e });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object');
  const r = raw as Record<string, unknown>;
  if (r['format'] !== STATE_FORMAT)
    throw bad(`format ${JSON.stringify(r['format'])}, expected ${STATE_FORMAT}`);
  const seen = r['seen'] as Record<string, unknown> | undefined;
  if (typeof seen !== 'object' || seen === null || !isCount(seen['generation']) || !isCount(seen['root']))
    throw bad('"seen" must hold the counts "generation" and "root"');
  const sources = r['sources'];
  if (typeof sources !== 'object' || sources === null || Array.isArray(sources))
    throw bad('"sources" must be an object');
  const out = emptyState();
  out.seen = { generation: seen['generation'], root: seen['root'] };
  for (const [url, v] of Object.entries(sources as Record<string, unknown>)) {
    const h = v as Record<string, unknown>;
    if (
      typeof h !== 'object' ||
      h === null ||
      !(h['rttMs'] === null || isTime(h['rttMs'])) ||
      !isTime(h['probedAtMs']) ||
      !isTime(h['penaltyUntilMs']) ||
      !(h['penaltyReason'] === null || typeof h['penaltyReason'] === 'string') ||
      !isCount(h['failures'])
    )
      throw bad(`source ${JSON.stringify(url.slice(0, 200))} has a malformed entry`);
    out.sources[url] = {
      rttMs: h['rttMs'],
      probedAtMs: h['probedAtMs'],
      penaltyUntilMs: h['penaltyUntilMs'],
      penaltyReason: h['penaltyReason'],
      failures: h['failures'],
    };
  }
  return out;
}

function readStateFile(path: string): StateFile | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(e, `agent state ${path}`);
  }
  return decodeState(text, path);
}

interface LegacyRow {
  url: string;
  rtt_ms: number | null;
  probed_at_ms: number;
  penalty_until_ms: number;
  penalty_reason: string | null;
  failures: number;
}

/**
 * Read the SQLite state of earlier agent versions, when better-sqlite3 can load (a source install);
 * a self-contained agent has no native addon and cannot. Loaded through require at run time, never
 * imported, so the agent's module graph holds no native addon.
 */
export function readLegacySqliteState(path: string): StateFile {
  const Database = createRequire(import.meta.url)('better-sqlite3') as new (
    p: string,
    o: { readonly: boolean; fileMustExist: boolean },
  ) => {
    prepare(sql: string): { all(): unknown[] };
    close(): void;
  };
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const out = emptyState();
    for (const row of db.prepare('SELECT key, value FROM seen').all() as Array<{
      key: string;
      value: number;
    }>) {
      if ((row.key === 'generation' || row.key === 'root') && isCount(row.value))
        out.seen[row.key] = row.value;
    }
    for (const r of db.prepare('SELECT * FROM sources').all() as LegacyRow[]) {
      out.sources[r.url] = {
        rttMs: r.rtt_ms,
        probedAtMs: r.probed_at_ms,
        penaltyUntilMs: r.penalty_until_ms,
        penaltyReason: r.penalty_reason,
        failures: r.failures,
      };
    }
    return out;
  } finally {
    db.close();
  }
}

/**
 * `A/state.json`: one small JSON file, replaced atomically (temporary file, fsync, rename, fsync of
 * the folder) on every change, so a raised generation survives a kill or a power loss and a reader
 * never sees half a file. Every change re-reads the file first and merges (the highest value wins),
 * so two agent commands running at once do not lower each other's baseline; what they can still lose
 * to each other in the instant between read and rename is a round-trip time or a penalty.
 *
 * An agent directory of an earlier version has `A/state.sqlite` instead: its values are carried over
 * once when better-sqlite3 loads; otherwise the agent starts with fresh state and says so (the
 * rollback baseline stays in the trusted TUF metadata, round-trip times are measured again).
 */
export class FileAgentState implements AgentStateStore {
  private state: StateFile;

  private constructor(
    private readonly path: string,
    initial: StateFile,
  ) {
    this.state = initial;
  }

  /** Open (or create) the state at `path`; `legacySqlite` is the state.sqlite of earlier versions. */
  static open(path: string, logger: Logger, opts: { legacySqlite?: string } = {}): FileAgentState {
    const existing = readStateFile(path);
    if (existing) return new FileAgentState(path, existing);
    let initial = emptyState();
    const legacy = opts.legacySqlite;
    if (legacy !== undefined && existsSync(legacy)) {
      try {
        initial = readLegacySqliteState(legacy);
        logger.info(
          { from: legacy, to: path, generation: initial.seen.generation, root: initial.seen.root },
          'agent state carried over from the SQLite file of an earlier version',
        );
      } catch (e) {
        logger.warn(
          {
            from: legacy,
            err: (e as Error).message,
            hint: 'nothing to do: the trusted TUF metadata in tuf/ remains the rollback baseline; the old file can be deleted',
          },
          'agent state: the SQLite file of an earlier version cannot be read here (no better-sqlite3); starting with fresh state',
        );
      }
    }
    const s = new FileAgentState(path, initial);
    s.write(initial);
    return s;
  }

  highest(key: 'generation' | 'root'): number {
    return this.state.seen[key];
  }

  raise(key: 'generation' | 'root', value: number): void {
    if (!isCount(value))
      throw new DepotsyncError('internal', `agent state: ${key} ${String(value)} is not a count`);
    this.update((s) => {
      s.seen[key] = Math.max(s.seen[key], value);
    });
  }

  health(url: string): SourceHealth {
    const h = this.state.sources[url];
    return h ? { url, ...h } : fresh(url);
  }

  recordProbe(url: string, rttMs: number | null, atMs: number): void {
    this.update((s) => {
      s.sources[url] = {
        ...entry(s, url),
        rttMs: rttMs === null ? null : Math.round(rttMs),
        probedAtMs: atMs,
      };
    });
  }

  penalize(url: string, untilMs: number, reason: string): void {
    this.update((s) => {
      const h = entry(s, url);
      s.sources[url] = {
        ...h,
        penaltyUntilMs: untilMs,
        penaltyReason: reason.slice(0, 500),
        failures: h.failures + 1,
      };
    });
  }

  recordSuccess(url: string): void {
    this.update((s) => {
      const h = s.sources[url];
      if (h) s.sources[url] = { ...h, penaltyUntilMs: 0, penaltyReason: null, failures: 0 };
    });
  }

  close(): void {}

  /** Re-read (another command may have written since), apply, keep the higher counts, write. */
  private update(change: (s: StateFile) => void): void {
    const onDisk = readStateFile(this.path) ?? emptyState();
    onDisk.seen.generation = Math.max(onDisk.seen.generation, this.state.seen.generation);
    onDisk.seen.root = Math.max(onDisk.seen.root, this.state.seen.root);
    change(onDisk);
    this.write(onDisk);
    this.state = onDisk;
  }

  private write(s: StateFile): void {
    writeFileAtomicSync(this.path, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  }
}
