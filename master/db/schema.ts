import type { Migration } from '../../src/db/open.js';

/**
 * The master's database schema (roles, trust and flows: docs/architecture.md). Conventions:
 * - times are ISO-8601 UTC strings with milliseconds (`Date.toISOString()`): readable in the sqlite3
 *   shell, the same form as the wire format, and they sort and compare as text;
 * - BLAKE3 and SHA-256 digests are lowercase hex TEXT, except chunk ids in `chunk_refs`, which are
 *   32-byte BLOBs because that table has a row per (manifest, chunk) and is the largest one;
 * - secrets (enrollment tokens, operator tokens, enrollment request ids) are stored only as the
 *   SHA-256 of the secret: they are 256-bit random values, so a fast hash is enough, and a copy of the
 *   database does not hand out credentials;
 * - TUF metadata files live in `metadata_files` (not on disk), so a generation, its changes, its signed
 *   bins, snapshot and timestamp commit in one transaction: a crash can never publish half of one;
 * - every table is STRICT, so a wrong type is an error instead of a silent conversion.
 *
 * Re-publishing a version after it was unpublished makes a NEW `package_versions` row; the old row keeps
 * its `removed_generation`, so history (and `changesSince`) stays exact. Uniqueness of (package, version)
 * holds among live rows only (partial unique index).
 */
const V1 = `
CREATE TABLE packages (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE manifests (
  seq         INTEGER PRIMARY KEY,          -- compact key for chunk_refs
  id          TEXT NOT NULL UNIQUE,         -- BLAKE3 hex of the canonical bytes
  sha256      TEXT NOT NULL,                -- TUF target hash (served as /v1/targets/{sha256}.{name})
  length      INTEGER NOT NULL,
  bytes       BLOB NOT NULL,                -- canonical manifest = the TUF target file content
  chunk_count INTEGER NOT NULL,             -- distinct chunk ids referenced
  created_at  TEXT NOT NULL
) STRICT;
CREATE INDEX manifests_by_sha256 ON manifests(sha256);

CREATE TABLE chunk_refs (
  manifest_seq INTEGER NOT NULL REFERENCES manifests(seq) ON DELETE CASCADE,
  chunk_id     BLOB NOT NULL,
  PRIMARY KEY (manifest_seq, chunk_id)
) STRICT, WITHOUT ROWID;
-- GC walks chunk ids in order and asks whether any live manifest references one.
CREATE INDEX chunk_refs_by_chunk ON chunk_refs(chunk_id);

CREATE TABLE generations (
  generation        INTEGER PRIMARY KEY,   -- = TUF snapshot version
  created_at        TEXT NOT NULL,
  created_by        TEXT NOT NULL,
  note              TEXT NOT NULL DEFAULT '',
  timestamp_version INTEGER                -- the timestamp version that first announced it
) STRICT;

CREATE TABLE package_versions (
  id                 INTEGER PRIMARY KEY,
  package_id         INTEGER NOT NULL REFERENCES packages(id),
  version            TEXT NOT NULL,
  manifest_id        TEXT NOT NULL REFERENCES manifests(id),
  manifest_sha256    TEXT NOT NULL,
  manifest_length    INTEGER NOT NULL,
  target_path        TEXT NOT NULL,        -- TUF target path of the manifest
  bin                TEXT NOT NULL,        -- hashed-bin delegated role holding the target
  total_bytes        INTEGER NOT NULL,
  chunk_count        INTEGER NOT NULL,
  added_generation   INTEGER NOT NULL REFERENCES generations(generation),
  removed_generation INTEGER REFERENCES generations(generation),
  created_at         TEXT NOT NULL,
  created_by         TEXT NOT NULL,
  CHECK (removed_generation IS NULL OR removed_generation > added_generation)
) STRICT;
CREATE UNIQUE INDEX package_versions_live ON package_versions(package_id, version) WHERE removed_generation IS NULL;
CREATE UNIQUE INDEX package_versions_live_target ON package_versions(target_path) WHERE removed_generation IS NULL;
CREATE INDEX package_versions_by_package ON package_versions(package_id, added_generation);
CREATE INDEX package_versions_by_manifest ON package_versions(manifest_id);
CREATE INDEX package_versions_by_bin ON package_versions(bin) WHERE removed_generation IS NULL;

CREATE TABLE generation_changes (
  generation  INTEGER NOT NULL REFERENCES generations(generation),
  kind        TEXT NOT NULL CHECK (kind IN ('add', 'remove')),
  package     TEXT NOT NULL,
  version     TEXT NOT NULL,
  manifest_id TEXT NOT NULL,
  PRIMARY KEY (generation, package, version, kind)
) STRICT, WITHOUT ROWID;

CREATE TABLE metadata_files (
  name       TEXT PRIMARY KEY,             -- '12.snapshot.json', '7.bin-3a.json', '3.root.json', 'timestamp.json'
  role       TEXT NOT NULL,
  version    INTEGER NOT NULL,
  bytes      BLOB NOT NULL,
  sha256     TEXT NOT NULL,
  length     INTEGER NOT NULL,
  generation INTEGER REFERENCES generations(generation),
  created_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX metadata_files_by_role ON metadata_files(role, version);

CREATE TABLE bins (
  name       TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  generation INTEGER NOT NULL REFERENCES generations(generation)
) STRICT;

CREATE TABLE machines (
  name            TEXT PRIMARY KEY,
  role            TEXT NOT NULL CHECK (role IN ('depot', 'agent')),
  state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'blocked', 'revoked')),
  request_hash    TEXT UNIQUE,             -- SHA-256 of the unguessable enrollment poll id
  csr_pem         TEXT,
  cert_pem        TEXT,
  cert_serial     TEXT,
  cert_not_after  TEXT,
  requested_at    TEXT NOT NULL,
  approved_at     TEXT,
  approved_by     TEXT,
  state_changed_at TEXT NOT NULL,
  state_changed_by TEXT,
  last_seen       TEXT,
  last_address    TEXT,
  renew_requested INTEGER NOT NULL DEFAULT 0,
  parent          TEXT,
  site            TEXT,
  url             TEXT
) STRICT;

-- Every certificate ever issued. Not tied to machines by a foreign key: the history (and so the
-- revocation of old serials) outlives a machine record that an operator removes.
CREATE TABLE certificates (
  serial     TEXT PRIMARY KEY,             -- lowercase hex, no leading zeros
  machine    TEXT NOT NULL,
  issued_at  TEXT NOT NULL,
  not_after  TEXT NOT NULL,
  revoked_at TEXT
) STRICT;
CREATE INDEX certificates_by_machine ON certificates(machine);
CREATE INDEX certificates_revoked ON certificates(not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE enrollment_tokens (
  id         INTEGER PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  role       TEXT NOT NULL CHECK (role IN ('depot', 'agent')),
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at    TEXT,
  used_by    TEXT
) STRICT;

CREATE TABLE operators (
  name        TEXT PRIMARY KEY,
  role        TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'viewer')),
  token_hash  TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL,
  created_by  TEXT NOT NULL,
  totp_secret TEXT,
  disabled    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE audit_log (
  id      INTEGER PRIMARY KEY,
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  target  TEXT NOT NULL DEFAULT '',
  detail  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
  address TEXT
) STRICT;
CREATE INDEX audit_log_by_target ON audit_log(target, id);

CREATE TABLE depot_status (
  id                INTEGER PRIMARY KEY,
  machine           TEXT NOT NULL REFERENCES machines(name) ON DELETE CASCADE,
  received_at       TEXT NOT NULL,         -- master clock
  reported_at       TEXT NOT NULL,         -- depot clock (as reported)
  sequence          INTEGER NOT NULL,      -- strictly increasing per depot; replays are ignored
  served_generation INTEGER NOT NULL,
  target_generation INTEGER NOT NULL,
  last_success      TEXT,
  last_error        TEXT,
  bytes_fetched     INTEGER NOT NULL,
  chunks_fetched    INTEGER NOT NULL,
  bytes_remaining   INTEGER NOT NULL DEFAULT 0,
  scrub_ok          INTEGER NOT NULL DEFAULT 0,
  scrub_failed      INTEGER NOT NULL DEFAULT 0,
  free_disk_bytes   INTEGER NOT NULL DEFAULT 0,
  valid_until       TEXT,
  address           TEXT,
  report            TEXT NOT NULL CHECK (json_valid(report))
) STRICT;
CREATE INDEX depot_status_by_machine ON depot_status(machine, id);
`;

/**
 * Version 2 (admin issue): dashboard sessions, alert state, and the last TOTP time step each operator
 * used (a code is accepted once: a code seen over someone's shoulder cannot be replayed).
 * Sessions are found by the SHA-256 of their cookie secret; `id` is the non-secret handle an admin
 * uses to list and end them.
 */
const V2 = `
CREATE TABLE operator_sessions (
  id            INTEGER PRIMARY KEY,
  secret_hash   TEXT NOT NULL UNIQUE,
  operator      TEXT NOT NULL,
  created_at    TEXT NOT NULL,
  last_seen_at  TEXT NOT NULL,
  expires_at    TEXT NOT NULL,             -- absolute lifetime
  ended_at      TEXT,
  ended_by      TEXT,
  ended_reason  TEXT,
  address       TEXT,
  user_agent    TEXT
) STRICT;
CREATE INDEX operator_sessions_active ON operator_sessions(operator) WHERE ended_at IS NULL;

CREATE TABLE alert_state (
  key              TEXT PRIMARY KEY,       -- kind:subject, e.g. 'certificate:depot-a'
  kind             TEXT NOT NULL,
  subject          TEXT NOT NULL,
  level            TEXT NOT NULL CHECK (level IN ('warning', 'error')),
  message          TEXT NOT NULL,
  raised_at        TEXT NOT NULL,
  last_notified_at TEXT NOT NULL,
  cleared_at       TEXT                    -- NULL while active
) STRICT;

ALTER TABLE operators ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
`;

/**
 * Version 3: operators' sync-now requests (`master notify`). The
 * command runs in its own process; the serving master polls this table (by primary key) and passes
 * each new row to the depots' event streams. Pruning keeps the newest rows, so max(seq) never goes
 * back and a sequence number is never reused.
 */
const V3 = `
CREATE TABLE notify_requests (
  seq          INTEGER PRIMARY KEY,
  depot        TEXT,                     -- NULL: every depot
  requested_at TEXT NOT NULL,
  requested_by TEXT NOT NULL
) STRICT;
`;

/**
 * Version 4 (admin issue, tiers): the upstream a depot syncs from, as its status report names it:
 * 'master', or the parent depot's machine name read from that depot's TLS certificate. NULL for
 * reports that do not say (older depots, offline status files): the enrollment's parent then counts.
 */
const V4 = `
ALTER TABLE depot_status ADD COLUMN upstream TEXT;
`;

// Operator administration (token expiry, last use).
/**
 * Version 5 (operator administration): operator tokens expire (`operatorTokenDays` in master.json,
 * counted from creation or rotation) and the last authenticated use is kept for `master operator list`.
 * Operators that exist already get 90 days from the migration, so nobody is locked out by upgrading.
 */
const V5 = `
ALTER TABLE operators ADD COLUMN token_expires_at TEXT;
ALTER TABLE operators ADD COLUMN last_used_at TEXT;
UPDATE operators SET token_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+90 days');
`;

/**
 * Version 6: operators that log in through the directory (LDAP). Their row exists so sessions, roles and
 * TOTP work as for local operators; `directory_dn` marks them (their role is rewritten at each login,
 * and they have no usable token: the stored hash is of a secret nobody was shown).
 */
const V6 = `
ALTER TABLE operators ADD COLUMN directory_dn TEXT;
`;

/**
 * Version 7 (several masters): the signer lease, one row. Exactly one master signs at a time: the one
 * named here while `expires_at` is ahead of the database's clock. `epoch` grows each time the lease
 * changes hands, and a commit of a generation checks holder and epoch inside its transaction
 * (master/ha/lease.ts), so a former signer that was paused past its lease can never publish.
 */
const V7 = `
CREATE TABLE signer_lease (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  holder      TEXT,                      -- NULL: released
  epoch       INTEGER NOT NULL,
  acquired_at TEXT NOT NULL,
  expires_at  TEXT NOT NULL
) STRICT;
`;

export const MASTER_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'catalog, machines, operators, audit, status', up: V1 },
  { version: 2, name: 'operator sessions, alert state, TOTP replay guard', up: V2 },
  { version: 3, name: 'sync-now requests (master notify)', up: V3 },
  { version: 4, name: 'status reports name the depot upstream (tiers)', up: V4 },
  { version: 5, name: 'operator token expiry and last use', up: V5 },
  { version: 6, name: 'directory operators (LDAP login)', up: V6 },
  { version: 7, name: 'signer lease (several masters)', up: V7 },
];
