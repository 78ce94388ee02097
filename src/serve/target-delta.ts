import { delta, DEFAULT_LEVEL } from '../compress/zstd.js';

/**
 * `GET /v1/targets-delta/{base}/{name}` (docs/http.md): target `name` (a package manifest) as a zstd
 * frame made with target `base` as its reference (`zstd --patch-from`), for a reader that holds `base`,
 * usually the previous version's manifest. A frame that would not be smaller than the target itself is
 * not sent: the answer is then the target whole, as `GET /v1/targets/{name}` serves it.
 *
 * Deltas are computed on request at zstd's default level (a few milliseconds for a 700 kB manifest;
 * level 19 saves about a tenth more at a hundred times the CPU, which would stall the event loop) and
 * kept in a small cache: every depot of a fleet asks for the same pair after a publish.
 */
export type TargetDeltaAnswer = { kind: 'delta'; bytes: Buffer } | { kind: 'full'; bytes: Buffer };

/** Computed deltas by `base/name`, least recently used dropped first, bounded in bytes. */
export class TargetDeltaCache {
  private readonly entries = new Map<string, TargetDeltaAnswer>();
  private bytes = 0;

  constructor(private readonly maxBytes = 16 * 1024 * 1024) {}

  answer(baseName: string, base: Buffer, name: string, target: Buffer): TargetDeltaAnswer {
    const key = `${baseName}/${name}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const frame = delta(base, target, DEFAULT_LEVEL);
    const out: TargetDeltaAnswer =
      frame.length < target.length ? { kind: 'delta', bytes: frame } : { kind: 'full', bytes: target };
    // A full answer holds only a reference to the served buffer; a delta costs its size.
    const cost = out.kind === 'delta' ? out.bytes.length : 0;
    if (cost > this.maxBytes) return out;
    this.entries.set(key, out);
    this.bytes += cost;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      if (v.kind === 'delta') this.bytes -= v.bytes.length;
    }
    return out;
  }
}
