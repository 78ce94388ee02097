import { readFileSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';
import { certificateInfo } from '../pki/cert-info.js';

/** What the depot gauges read, at scrape time (so they are never stale). */
export interface DepotGaugeSource {
  servedGeneration(): number | null;
  targetGeneration(): number | null;
  bytesRemaining(): number;
  scrubFailed(): number;
  /** Path of the depot's machine certificate (may not exist before enrollment). */
  certPath: string;
}

export function depotGauges(registry: Registry, src: DepotGaugeSource): void {
  new Gauge({
    name: 'depotsync_depot_served_generation',
    help: 'Generation the depot serves (0 before its first sync)',
    registers: [registry],
    collect() {
      this.set(src.servedGeneration() ?? 0);
    },
  });
  new Gauge({
    name: 'depotsync_depot_lag_generations',
    help: 'Generations between the newest the depot has seen upstream and the one it serves',
    registers: [registry],
    collect() {
      const served = src.servedGeneration() ?? 0;
      this.set(Math.max(0, (src.targetGeneration() ?? served) - served));
    },
  });
  new Gauge({
    name: 'depotsync_depot_remaining_bytes',
    help: 'Bytes the target generation still lacks',
    registers: [registry],
    collect() {
      this.set(src.bytesRemaining());
    },
  });
  new Gauge({
    name: 'depotsync_depot_scrub_failed_chunks',
    help: 'Chunks the last scrub found damaged',
    registers: [registry],
    collect() {
      this.set(src.scrubFailed());
    },
  });
  new Gauge({
    name: 'depotsync_certificate_expiry_timestamp_seconds',
    help: "Unix time at which the depot's machine certificate expires",
    registers: [registry],
    collect() {
      this.reset();
      try {
        this.set(Math.floor(certificateInfo(readFileSync(src.certPath, 'utf8')).notAfter.getTime() / 1000));
      } catch {
        // Not enrolled yet: no sample.
      }
    },
  });
}
