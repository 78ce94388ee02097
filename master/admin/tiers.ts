/**
 * Depot tiers: tier 1 syncs from the master, tier 2 from a tier-1 depot, and so on.
 * Each depot names its upstream ('master' or a depot's machine name, from that depot's certificate) in
 * its status reports; a depot that never said so counts its enrollment's parent, else the master.
 *
 * The parents are claims of many machines, so the walk is defensive: a parent that is not a fleet
 * depot, a cycle (a → b → a, or a depot naming itself), or a chain deeper than MAX_TIER gives the
 * depot (and every depot below it) no tier, with the reason, instead of a wrong number or a hang.
 */
export interface TierInfo {
  /** 1 = syncs from the master; null = unknown (see problem). */
  tier: number | null;
  /** The parent depot's name; null when the depot syncs from the master. */
  parent: string | null;
  problem: string | null;
}

export const MAX_TIER = 64;

/** `upstreams`: every fleet depot → 'master' | the parent depot's name. */
export function computeTiers(
  upstreams: ReadonlyMap<string, string>,
  master = 'master',
): Map<string, TierInfo> {
  const out = new Map<string, TierInfo>();
  const parentOf = (name: string): string | null => {
    const up = upstreams.get(name);
    return up === undefined || up === master ? null : up;
  };
  for (const start of upstreams.keys()) {
    if (out.has(start)) continue;
    // Walk up until the master, a depot already resolved, an unknown parent, or a repeat (a cycle).
    const path: string[] = [];
    const onPath = new Map<string, number>();
    let cur: string | null = start;
    let base: TierInfo | undefined; // what the top of the walked path hangs from
    let failure: string | undefined;
    while (cur !== null) {
      const known = out.get(cur);
      if (known) {
        base = known;
        break;
      }
      if (onPath.has(cur)) {
        const cycle = [...path.slice(onPath.get(cur)), cur];
        failure = `upstream cycle: ${cycle.join(' → ')}`;
        // Every depot on the cycle itself gets the cycle as its reason.
        for (const d of path.slice(onPath.get(cur)))
          out.set(d, { tier: null, parent: parentOf(d), problem: failure });
        break;
      }
      if (!upstreams.has(cur)) {
        failure = `upstream ${cur} is not a known depot`;
        break;
      }
      if (path.length >= MAX_TIER) {
        failure = `upstream chain deeper than ${MAX_TIER}`;
        break;
      }
      onPath.set(cur, path.length);
      path.push(cur);
      cur = parentOf(cur);
    }
    // Assign from the top of the path down.
    let above: TierInfo | undefined = base;
    let aboveName: string | null = cur;
    for (let i = path.length - 1; i >= 0; i--) {
      const name = path[i]!;
      if (out.has(name)) {
        above = out.get(name);
        aboveName = name;
        continue;
      }
      const parent = parentOf(name);
      let info: TierInfo;
      if (parent === null) info = { tier: 1, parent: null, problem: null };
      else if (above && above.tier !== null) info = { tier: above.tier + 1, parent, problem: null };
      else if (above) info = { tier: null, parent, problem: `below ${aboveName}, whose tier is unknown` };
      else info = { tier: null, parent, problem: failure ?? `upstream ${parent} is not a known depot` };
      out.set(name, info);
      above = info;
      aboveName = name;
    }
  }
  return out;
}
