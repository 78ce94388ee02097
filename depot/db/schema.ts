import type { Migration } from '../../src/db/open.js';

/**
 * The depot database schema, versioned by SQLite's `user_version` (docs/contributing.md). A migration is
 * appended, never edited: migration i takes the schema from version i to i + 1.
 *
 * trusted            the TUF client's trusted metadata by role (TrustedStore): only verified bytes
 * metadata           every verified metadata file by its consistent-snapshot name (`3.root.json`,
 *                    `12.snapshot.json`, `7.bin-3a.json`), re-served byte for byte to agents and children
 * targets            verified package manifests by their served name `{sha256}.{path}`; `complete` = every
 *                    chunk of it is in the store (cleared when a scrub quarantines a chunk)
 * generation_targets the target sets of the served and of the pending generation (slot)
 * served             the generation agents see: its timestamp bytes; changed only by the switch transaction
 * pending            the generation being fetched (its chunks are live for GC)
 * revocations        the last verified revocation list, re-served byte for byte
 * runs               sync history
 * kv                 counters and last results (status report sequence, scrub counts, …)
 * sync_lock          the single-flight lock across processes (pid + token)
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'depot tables',
    up: `
  CREATE TABLE trusted (
    role    TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    bytes   BLOB NOT NULL
  );
  CREATE TABLE metadata (
    name     TEXT PRIMARY KEY,
    role     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    bytes    BLOB NOT NULL,
    added_at TEXT NOT NULL
  );
  CREATE INDEX metadata_role ON metadata(role, version);
  CREATE TABLE targets (
    name        TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    length      INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    total_bytes INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    complete    INTEGER NOT NULL DEFAULT 0,
    added_at    TEXT NOT NULL
  );
  CREATE TABLE generation_targets (
    slot TEXT NOT NULL CHECK (slot IN ('served', 'pending')),
    path TEXT NOT NULL,
    name TEXT NOT NULL REFERENCES targets(name),
    PRIMARY KEY (slot, path)
  );
  CREATE INDEX generation_targets_name ON generation_targets(name);
  CREATE TABLE served (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL,
    timestamp   BLOB NOT NULL,
    ts_version  INTEGER NOT NULL,
    switched_at TEXT NOT NULL
  );
  CREATE TABLE pending (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    started_at TEXT NOT NULL
  );
  CREATE TABLE revocations (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL,
    bytes      BLOB NOT NULL,
    fetched_at TEXT NOT NULL
  );
  CREATE TABLE runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    pid            INTEGER NOT NULL,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    outcome        TEXT NOT NULL DEFAULT 'running',
    generation     INTEGER,
    chunks_fetched INTEGER NOT NULL DEFAULT 0,
    bytes_fetched  INTEGER NOT NULL DEFAULT 0,
    error          TEXT
  );
  CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  CREATE TABLE sync_lock (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    token       TEXT NOT NULL,
    acquired_at TEXT NOT NULL
  );
  `,
  },
];
