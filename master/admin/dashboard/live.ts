import { sqliteHandle, type MasterDb } from '../../db/database.js';
import type { AdminService } from '../service.js';
import type { LiveData } from './sections.js';

/**
 * The data behind the live sections, shared by every open dashboard: computed again only when the
 * database changed (a status report, an approval, a publish by another process) or when `maxAgeMs`
 * passed (silence and lag grow with time alone). Change detection is two cheap reads:
 * `PRAGMA data_version` (commits by OTHER connections, e.g. `depotsync master publish`) and
 * `total_changes()` (commits by this one, e.g. `POST /v1/status`). On another backend than SQLite the key
 * is the newest report, audit entry and generation (approvals and the like are audited); what only ages
 * (silence, lag) is caught by `maxAgeMs` as on SQLite.
 */
export class LiveFeed {
  private cached: { key: string; atMs: number; data: Omit<LiveData, 'sessions'> } | undefined;

  constructor(
    private readonly db: MasterDb,
    private readonly admin: AdminService,
    private readonly maxAgeMs = 30_000,
  ) {}

  async changeKey(): Promise<string> {
    const sqlite = sqliteHandle(this.db);
    if (sqlite) {
      const v = sqlite.pragma('data_version', { simple: true }) as number;
      const t = sqlite.prepare('SELECT total_changes()').pluck().get() as number;
      return `${v}:${t}`;
    }
    const r = await this.db.sql.get<{ s: number | null; a: number | null; g: number | null }>(
      `SELECT (SELECT max(id) FROM depot_status) AS s, (SELECT max(id) FROM audit_log) AS a,
         (SELECT max(generation) FROM generations) AS g`,
    );
    return `${r?.s ?? 0}:${r?.a ?? 0}:${r?.g ?? 0}`;
  }

  async get(): Promise<Omit<LiveData, 'sessions'>> {
    const nowMs = this.admin.now().getTime();
    const key = await this.changeKey();
    if (!this.cached || this.cached.key !== key || nowMs - this.cached.atMs >= this.maxAgeMs) {
      const status = await this.admin.status();
      // Key again after computing: the alert monitor may have written (its own change is no news).
      this.cached = {
        key: await this.changeKey(),
        atMs: nowMs,
        data: { status, audit: await this.admin.audit(), nowMs },
      };
    }
    return this.cached.data;
  }
}
