import type { MasterDb } from '../../db/database.js';
import type { AdminService } from '../service.js';
import type { LiveData } from './sections.js';

/**
 * The data behind the live sections, shared by every open dashboard: computed again only when the
 * database changed (a status report, an approval, a publish by another process) or when `maxAgeMs`
 * passed (silence and lag grow with time alone). Change detection is two cheap reads:
 * `PRAGMA data_version` (commits by OTHER connections, e.g. `depotsync master publish`) and
 * `total_changes()` (commits by this one, e.g. `POST /v1/status`).
 */
export class LiveFeed {
  private cached: { key: string; atMs: number; data: Omit<LiveData, 'sessions'> } | undefined;

  constructor(
    private readonly db: MasterDb,
    private readonly admin: AdminService,
    private readonly maxAgeMs = 30_000,
  ) {}

  changeKey(): string {
    const v = this.db.db.pragma('data_version', { simple: true }) as number;
    const t = this.db.db.prepare('SELECT total_changes()').pluck().get() as number;
    return `${v}:${t}`;
  }

  get(): Omit<LiveData, 'sessions'> {
    const nowMs = this.admin.now().getTime();
    const key = this.changeKey();
    if (!this.cached || this.cached.key !== key || nowMs - this.cached.atMs >= this.maxAgeMs) {
      const status = this.admin.status();
      // Key again after computing: the alert monitor may have written (its own change is no news).
      this.cached = {
        key: this.changeKey(),
        atMs: nowMs,
        data: { status, audit: this.admin.audit(), nowMs },
      };
    }
    return this.cached.data;
  }
}
