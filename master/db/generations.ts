import { DepotsyncError } from '../../src/errors.js';
import { inTransaction, nowIso, type MasterDb } from './database.js';
import { count, text } from './values.js';

/**
 * Generations: generation N is TUF snapshot version N, made by one publish or unpublish. Rows are
 * created inside the transaction that makes the catalog change and signs its metadata (catalog.ts).
 */
export interface Generation {
  generation: number;
  createdAt: string;
  createdBy: string;
  note: string;
  timestampVersion?: number;
}

interface GenerationRow {
  generation: number;
  created_at: string;
  created_by: string;
  note: string;
  timestamp_version: number | null;
}

const toGeneration = (r: GenerationRow): Generation => {
  const g: Generation = {
    generation: r.generation,
    createdAt: r.created_at,
    createdBy: r.created_by,
    note: r.note,
  };
  if (r.timestamp_version !== null) g.timestampVersion = r.timestamp_version;
  return g;
};

/** The newest generation, or 0 before the first one. */
export async function currentGeneration(m: MasterDb): Promise<number> {
  const r = await m.sql.get<{ g: number | null }>('SELECT max(generation) AS g FROM generations');
  return r?.g ?? 0;
}

/**
 * Start generation current+1. Passing `generation` makes it a compare-and-set: the caller built
 * (and signed) metadata for that number, and if another publish got there first this fails with
 * 'conflict' instead of committing metadata that names the wrong snapshot version.
 */
export async function createGeneration(
  m: MasterDb,
  input: {
    createdBy: string;
    note?: string;
    generation?: number;
    timestampVersion?: number;
    /** A version epoch (a restored master, master/backup/epoch.ts): `generation` may skip numbers. */
    skip?: boolean;
  },
): Promise<Generation> {
  requireTransaction(m, 'createGeneration');
  const current = await currentGeneration(m);
  let next = current + 1;
  if (input.skip && input.generation !== undefined && input.generation > current) next = input.generation;
  if (input.generation !== undefined && input.generation !== next) {
    throw new DepotsyncError('conflict', `generation ${input.generation}: the next generation is ${next}`, {
      hint: 'another publish committed first; rebuild the metadata and try again',
    });
  }
  const note = input.note === undefined || input.note === '' ? '' : text(input.note, 'generation note', 1000);
  const ts =
    input.timestampVersion === undefined ? null : count(input.timestampVersion, 'timestampVersion', 1);
  await m.sql.run(
    'INSERT INTO generations (generation, created_at, created_by, note, timestamp_version) VALUES (?, ?, ?, ?, ?)',
    [next, nowIso(m), text(input.createdBy, 'createdBy'), note, ts],
  );
  return (await getGeneration(m, next))!;
}

export async function getGeneration(m: MasterDb, generation: number): Promise<Generation | undefined> {
  const r = await m.sql.get<GenerationRow>('SELECT * FROM generations WHERE generation = ?', [generation]);
  return r && toGeneration(r);
}

/** Newest first; `before` pages backwards. */
export async function listGenerations(
  m: MasterDb,
  opts: { limit?: number; before?: number } = {},
): Promise<Generation[]> {
  const rows = await m.sql.all<GenerationRow>(
    'SELECT * FROM generations WHERE generation < ? ORDER BY generation DESC LIMIT ?',
    [opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit ?? 100],
  );
  return rows.map(toGeneration);
}

/** Record the timestamp version that announced `generation` (when it is signed after the generation row). */
export async function setGenerationTimestampVersion(
  m: MasterDb,
  generation: number,
  timestampVersion: number,
): Promise<void> {
  await m.sql.run('UPDATE generations SET timestamp_version = ? WHERE generation = ?', [
    count(timestampVersion, 'timestampVersion', 1),
    generation,
  ]);
}

/** Catalog changes must run in a transaction that also creates their generation. */
export function requireTransaction(m: MasterDb, fn: string): void {
  if (!inTransaction(m)) {
    throw new DepotsyncError(
      'internal',
      `${fn} must run inside transaction(m, …) (master/db/database.ts) together with its generation`,
    );
  }
}

export async function requireNewest(m: MasterDb, generation: number): Promise<void> {
  const current = await currentGeneration(m);
  if (generation !== current) {
    throw new DepotsyncError(
      'conflict',
      `generation ${generation} is not the newest (${current}); a catalog change belongs to a new generation`,
      {
        hint: 'call createGeneration in the same transaction and use the number it returns',
      },
    );
  }
  // A generation whose snapshot is signed is published: changing it afterwards would make the catalog
  // disagree with metadata that depots already hold.
  const signed = await m.sql.get(
    "SELECT 1 AS one FROM metadata_files WHERE role = 'snapshot' AND version = ?",
    [generation],
  );
  if (signed) {
    throw new DepotsyncError(
      'conflict',
      `generation ${generation} is already signed (${generation}.snapshot.json exists)`,
      {
        hint: 'make catalog changes in a new generation',
      },
    );
  }
}
