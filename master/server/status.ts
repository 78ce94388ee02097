import type { TLSSocket } from 'node:tls';
import { Hono } from 'hono';
import { DepotsyncError } from '../../src/errors.js';
import type { ServeEnv } from '../../src/serve/env.js';
import { readBodyCapped } from '../../src/serve/http-errors.js';
import { MAX_STATUS_BODY_BYTES, parseStatusReport } from '../../src/wire/status.js';
import type { MasterDb } from '../db/database.js';
import {
  recordDepotStatuses,
  type DepotStatusInput,
  type RecordOutcome,
  type StatusRecordOptions,
} from '../db/status.js';
import { rateLimited } from './client-address.js';
import type { RateLimiter } from './rate-limit.js';

/**
 * `POST /v1/status` (mutual TLS; docs/architecture.md): a depot's report about itself. It is filed under the
 * machine the client CERTIFICATE names: a name inside the body is ignored, so one depot cannot speak
 * for another. Rate-limited per machine; the body is capped while it streams, before parsing.
 *
 * Reports are decoded and checked at once, then committed in groups (StatusCommitQueue): a fleet of a
 * thousand depots reporting once a minute costs a few commits (fsyncs) a second, not one per report.
 * A depot gets its answer only after its report's commit, so nothing acknowledged is ever lost.
 */
export function statusRoutes(
  db: MasterDb,
  limiter: RateLimiter,
  opts: Partial<StatusQueueOptions> = {},
): Hono<ServeEnv> {
  const app = new Hono<ServeEnv>();
  const queue = new StatusCommitQueue(db, opts);
  app.post(
    '/v1/status',
    rateLimited(limiter, (c) => c.get('machine').name, 'status reports'),
    async (c) => {
      const machine = c.get('machine');
      if (machine.role !== 'depot') {
        throw new DepotsyncError(
          'forbidden',
          `machine ${machine.name} is ${machine.role === 'agent' ? 'an agent' : machine.role}; only depots report status`,
        );
      }
      const body = await readBodyCapped(c, MAX_STATUS_BODY_BYTES, `status report from ${machine.name}`);
      const { report, raw } = parseStatusReport(body, `status report from ${machine.name}`);
      const address = (c.env?.incoming?.socket as TLSSocket | undefined)?.remoteAddress;
      const outcome = await queue.submit(machine.name, report, { raw, ...(address ? { address } : {}) });
      return c.json({ machine: machine.name, sequence: report.sequence, outcome });
    },
  );
  return app;
}

export interface StatusQueueOptions {
  /** At most one commit per this many ms; a report arriving after a quiet spell is committed at once. */
  batchMs: number;
  /** A group this large is committed without waiting for the window. */
  maxBatch: number;
  clockMs: () => number;
}

export const STATUS_QUEUE_DEFAULTS: StatusQueueOptions = {
  batchMs: 1000,
  maxBatch: 500,
  clockMs: () => performance.now(),
};

interface Pending {
  machine: string;
  report: DepotStatusInput;
  opts: StatusRecordOptions;
  resolve: (o: RecordOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit for status reports: reports submitted in the same window share one transaction. The
 * first report after a quiet window is committed on the next turn of the event loop (no added delay
 * for a lone report); later ones wait for the window to end, so the commit rate stays at most one per
 * `batchMs` however many depots report. Each report still gets its own outcome or error.
 */
export class StatusCommitQueue {
  private readonly o: StatusQueueOptions;
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastCommitMs = -Infinity;

  constructor(
    private readonly db: MasterDb,
    opts: Partial<StatusQueueOptions> = {},
  ) {
    this.o = { ...STATUS_QUEUE_DEFAULTS, ...opts };
    if (!Number.isInteger(this.o.batchMs) || this.o.batchMs < 0 || this.o.batchMs > 10_000) {
      throw new DepotsyncError(
        'bad-input',
        `status queue: batchMs must be an integer from 0 to 10000, got ${JSON.stringify(this.o.batchMs)}`,
      );
    }
    if (!Number.isInteger(this.o.maxBatch) || this.o.maxBatch < 1) {
      throw new DepotsyncError(
        'bad-input',
        `status queue: maxBatch must be an integer >= 1, got ${JSON.stringify(this.o.maxBatch)}`,
      );
    }
  }

  submit(machine: string, report: DepotStatusInput, opts: StatusRecordOptions = {}): Promise<RecordOutcome> {
    return new Promise<RecordOutcome>((resolve, reject) => {
      this.pending.push({ machine, report, opts, resolve, reject });
      if (this.pending.length >= this.o.maxBatch) return this.flushSoon(0);
      if (this.timer) return;
      const waitMs = Math.max(0, this.lastCommitMs + this.o.batchMs - this.o.clockMs());
      this.flushSoon(waitMs);
    });
  }

  private flushSoon(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), ms);
  }

  /** Commit everything queued now (also what a timer does). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    this.lastCommitMs = this.o.clockMs();
    let results: Array<RecordOutcome | DepotsyncError>;
    try {
      results = await recordDepotStatuses(this.db, batch);
    } catch (e) {
      // The transaction itself failed (disk full, database locked too long): nobody's report is stored.
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (r instanceof Error) p.reject(r);
      else p.resolve(r);
    });
  }
}
