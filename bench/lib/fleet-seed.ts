import { createHash } from 'node:crypto';
import { transaction, type MasterDb } from '../../master/db/database.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const iso = (ms: number) => new Date(ms).toISOString();

/**
 * A fleet for the admin benchmarks: `versions` live package versions (one generation each) and `depots`
 * approved depots with `reports` status reports of history each (95% current, 4% behind, 1% failing),
 * straight into the catalog (publishing 10,000 real versions would take long). Any backend.
 */
export async function seedFleet(
  db: MasterDb,
  nowMs: number,
  o: { depots: number; versions: number; reports: number },
): Promise<void> {
  const { depots: DEPOTS, versions: VERSIONS, reports: REPORTS } = o;
  const statement =
    (sql: string) =>
    (...params: (string | number | Buffer | null)[]) =>
      db.sql.run(sql, params);
  await transaction(db, async () => {
    const gen = statement(
      "INSERT INTO generations (generation, created_at, created_by) VALUES (?, ?, 'bench')",
    );
    const pkg = statement(
      'INSERT INTO packages (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING',
    );
    const man = statement(
      'INSERT INTO manifests (id, sha256, length, bytes, chunk_count, created_at) VALUES (?, ?, 10, ?, 1, ?)',
    );
    const ver = statement(
      `INSERT INTO package_versions (package_id, version, manifest_id, manifest_sha256, manifest_length, target_path, bin, total_bytes, chunk_count, added_generation, created_at, created_by)
       VALUES ((SELECT id FROM packages WHERE name = ?), ?, ?, ?, 10, ?, 'bin-00', 1000000, 16, ?, ?, 'bench')`,
    );
    for (let i = 0; i < VERSIONS; i++) {
      const g = i + 2;
      const at = iso(nowMs - (VERSIONS - i) * 60_000);
      await gen(g, at);
      const name = `pkg-${String(i % Math.max(1, VERSIONS / 10)).padStart(4, '0')}`;
      await pkg(name, at);
      const id = hex(`m${i}`);
      await man(id, hex(`s${i}`), Buffer.from('x'), at);
      await ver(name, `1.${i}`, id, hex(`s${i}`), `${name}/1.${i}`, g, at);
    }
    const current = VERSIONS + 1;
    const machine = statement(
      `INSERT INTO machines (name, role, state, requested_at, approved_at, state_changed_at, cert_serial, cert_not_after, last_seen) VALUES (?, 'depot', 'approved', ?, ?, ?, ?, ?, ?)`,
    );
    const report = statement(
      `INSERT INTO depot_status (machine, received_at, reported_at, sequence, served_generation, target_generation, last_success, last_error, bytes_fetched, chunks_fetched, bytes_remaining, free_disk_bytes, report)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 10, ?, 100000000000, '{}')`,
    );
    for (let d = 0; d < DEPOTS; d++) {
      const name = `depot-${String(d).padStart(5, '0')}`;
      await machine(
        name,
        iso(nowMs - 90 * 86_400_000),
        iso(nowMs - 90 * 86_400_000),
        iso(nowMs),
        hex(name).slice(0, 16),
        iso(nowMs + (((d * 7) % 365) + 1) * 86_400_000),
        iso(nowMs - 30_000),
      );
      // 95% current, 4% a few generations behind (fetching), 1% failing.
      const lag = d % 100 < 95 ? 0 : d % 100 < 99 ? 3 : 10;
      const failing = d % 100 === 99;
      for (let r = 0; r < REPORTS; r++) {
        const at = iso(nowMs - (REPORTS - r) * 60_000);
        await report(
          name,
          at,
          at,
          r + 1,
          current - lag,
          current,
          at,
          failing ? 'sync failed: timeout' : null,
          lag ? 5_000_000 : 0,
          lag ? 50_000_000 : 0,
        );
      }
    }
  });
}
