import { formatBytes } from './alerts.js';
import type { FleetStatus } from './status-model.js';

/**
 * The fleet status as plain-text tables (`depotsync status --dir M` on a terminal). Values that came
 * from the network (a depot's error message) have control characters replaced, so a report cannot
 * rewrite the operator's terminal with escape sequences.
 */
export function fleetTables(s: FleetStatus, opts: { maxPackages?: number } = {}): string {
  const m = s.summary;
  const out: string[] = [
    `master ${clean(s.master)}: generation ${s.generation}${s.generationCreatedAt ? ` (published ${s.generationCreatedAt})` : ''}`,
    `depots: ${m.depots} (${m.current} current, ${m.lagging} lagging, ${m.failing} failing, ${m.silent} silent, ${m['never-reported']} never reported, ${m.blocked} blocked); ${m.pending} machine(s) waiting for approval`,
    '',
  ];
  if (s.depots.length) {
    out.push(
      table(
        [
          'DEPOT',
          'STATE',
          'TIER',
          'UPSTREAM',
          'SERVED',
          'TARGET',
          'BEHIND',
          'LEFT',
          'ETA',
          'LAST SEEN',
          'CERT DAYS',
          'LAST ERROR',
        ],
        s.depots.map((d) => [
          d.name + (d.offline ? ' (offline)' : ''),
          d.state,
          d.tier === null ? '?' : String(d.tier),
          d.parent ?? 'master',
          String(d.servedGeneration ?? '-'),
          String(d.targetGeneration ?? '-'),
          d.lagGenerations ? `${d.lagGenerations} gen` : '-',
          d.bytesRemaining ? formatBytes(d.bytesRemaining) : '-',
          d.etaSeconds === null ? '-' : `${Math.ceil(d.etaSeconds / 60)} min`,
          d.lastSeen ?? 'never',
          d.certificate.daysLeft === null ? '-' : String(d.certificate.daysLeft),
          (d.lastError ?? '').slice(0, 60),
        ]),
      ),
      '',
    );
    const unknown = s.depots.filter((d) => d.tierProblem);
    if (unknown.length)
      out.push('tiers unknown:', ...unknown.map((d) => `  ${d.name}: ${clean(d.tierProblem!)}`), '');
  }
  const open = s.packages
    .filter((p) => p.inProgress + p.failed + p.waiting > 0)
    .slice(0, opts.maxPackages ?? 50);
  if (open.length) {
    out.push(
      table(
        ['PACKAGE', 'GEN', 'COMPLETE', 'IN PROGRESS', 'FAILED', 'WAITING'],
        open.map((p) => [
          `${p.name}@${p.version}`,
          String(p.generation),
          String(p.complete),
          String(p.inProgress),
          String(p.failed),
          String(p.waiting),
        ]),
      ),
      '',
    );
  } else if (s.packages.length) {
    out.push(`packages: all ${s.packages.length} live version(s) complete on every depot that reported`, '');
  }
  if (s.pending.length)
    out.push(
      table(
        ['PENDING MACHINE', 'ROLE', 'REQUESTED'],
        s.pending.map((p) => [p.name, p.role, p.requestedAt]),
      ),
      '',
    );
  if (s.alerts.length)
    out.push('alerts:', ...s.alerts.map((a) => `  ${a.level.toUpperCase().padEnd(7)} ${clean(a.message)}`));
  else out.push('alerts: none');
  return out.join('\n');
}

function clean(v: string): string {
  return v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function table(head: string[], rows: string[][]): string {
  const cells = [head, ...rows.map((r) => r.map(clean))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
