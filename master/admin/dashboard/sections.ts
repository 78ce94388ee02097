import { html } from 'hono/html';
import type { AuditEntry } from '../../db/audit.js';
import type { Operator, OperatorRole } from '../../db/operators.js';
import type { DepotView } from '../depot-status.js';
import type { PackageStatus } from '../package-status.js';
import type { ActiveSession } from '../sessions.js';
import type { FleetStatus } from '../status-model.js';
import { duration, formatBytes, stamp, when } from './format.js';

/**
 * The live part of the dashboard, rendered on the server with hono's `html` helper: every interpolated
 * value is HTML-escaped (text and attributes), so a hostile machine name, error message or audit entry
 * shows as text. The same function renders the first page and every server-sent update.
 */
export interface Viewer {
  name: string;
  role: OperatorRole;
  csrf: string;
  sessionId: number;
}

export interface LiveData {
  status: FleetStatus;
  audit: AuditEntry[];
  sessions: ActiveSession[] | undefined;
  /** Operators with role, TOTP, last use and token expiry; admins only (undefined for others). */
  operators?: Operator[] | undefined;
  nowMs: number;
}

type Html = ReturnType<typeof html>;

/** Package rows shown: every version not yet complete everywhere, then the newest complete ones. */
const COMPLETE_ROWS = 30;

export function liveSections(d: LiveData, v: Viewer): Html {
  const s = d.status;
  return html`${overview(s)}${alerts(s)}${drift(s.depots)}${depots(s.depots)}${packages(s.packages, s.summary.depots)}${pending(s, v)}${certificates(s)}${
    d.sessions ? sessions(d.sessions, v) : ''
  }${d.operators ? operators(d.operators, d.nowMs) : ''}${audit(d.audit)}`;
}

function overview(s: FleetStatus): Html {
  const card = (label: string, n: number, cls: string) =>
    html`<div class="card ${cls}" data-count="${label}"><b>${n}</b><span>${label}</span></div>`;
  const m = s.summary;
  return html`<section id="overview" aria-label="fleet overview">
    <h2>Fleet <small>generation ${s.generation}${s.generationCreatedAt ? html`, published ${stamp(s.generationCreatedAt)}` : ''}</small></h2>
    <div class="cards">
      ${card('current', m.current, 'ok')}${card('lagging', m.lagging, m.lagging ? 'warn' : '')}${card('failing', m.failing, m.failing ? 'bad' : '')}${card('silent', m.silent, m.silent ? 'bad' : '')}
      ${card('never reported', m['never-reported'], '')}${card('blocked', m.blocked, '')}${card('pending machines', m.pending, m.pending ? 'warn' : '')}
    </div>
  </section>`;
}

function alerts(s: FleetStatus): Html {
  return html`<section id="alerts"><h2>Alerts <small>${s.alerts.length}</small></h2>
    ${s.alerts.length === 0 ? html`<p class="quiet">No active alerts.</p>` : html`<ul class="alerts">${s.alerts.map((a) => html`<li class="${a.level}" data-alert="${a.key}"><b>${a.level}</b> ${a.message}${a.since ? html` <small>since ${stamp(a.since)}</small>` : ''}</li>`)}</ul>`}
  </section>`;
}

function drift(all: DepotView[]): Html {
  const behind = all
    .filter((d) => d.lagGenerations > 0 && d.machineState === 'approved')
    .sort((a, b) => b.lagGenerations - a.lagGenerations || a.name.localeCompare(b.name));
  return html`<section id="drift"><h2>Drift <small>${behind.length} depot(s) behind</small></h2>
    ${
      behind.length === 0
        ? html`<p class="quiet">Every depot serves the newest generation.</p>`
        : html`<div class="scroll"><table><thead><tr><th>depot</th><th>tier</th><th>behind</th><th>for</th><th>bytes left</th><th>ETA</th><th>last error</th></tr></thead><tbody>
        ${behind.map(
          (d) =>
            html`<tr data-drift="${d.name}"><td>${d.name}</td><td>${tierCell(d)}</td><td>${d.lagGenerations} gen.</td><td>${when(d.lagSince, '–')}</td><td>${formatBytes(d.bytesRemaining)}</td><td>${
              d.etaSeconds === null ? '–' : duration(d.etaSeconds)
            }</td><td class="err">${d.lastError ?? ''}</td></tr>`,
        )}</tbody></table></div>`
    }
  </section>`;
}

function depots(all: DepotView[]): Html {
  return html`<section id="depots"><h2>Depots <small>${all.length}</small></h2>
    <div class="scroll"><table><thead><tr><th>depot</th><th>state</th><th>served / target</th><th>tier</th><th>last seen</th><th>last success</th><th>scrub</th><th>free disk</th><th>certificate</th></tr></thead><tbody>
    ${all.map(
      (d) =>
        html`<tr data-depot="${d.name}" data-state="${d.state}"><td>${d.name}${d.offline ? html` <small>(offline)</small>` : ''}</td><td><span class="badge ${d.state}">${d.state}</span></td><td>${d.servedGeneration ?? '–'} / ${
          d.targetGeneration ?? '–'
        }</td><td data-tier="${d.tier ?? '?'}">${tierCell(d)}</td><td >${when(d.lastSeen)}</td><td >${when(d.lastSuccess)}</td><td>${d.scrub.ok} ok${
          d.scrub.failed ? html`, <b class="err">${d.scrub.failed} failed</b>` : ''
        }</td><td>${d.freeDiskBytes === null ? '–' : formatBytes(d.freeDiskBytes)}</td><td>${d.certificate.daysLeft === null ? '–' : `${d.certificate.daysLeft} days`}</td></tr>${
          d.lastError
            ? html`<tr class="detail"><td colspan="9" class="err">last error: ${d.lastError}</td></tr>`
            : ''
        }`,
    )}</tbody></table></div>
  </section>`;
}

/** "2 below depot-a", or "? (upstream cycle: …)" when the tier is unknown: every part escaped by html``. */
function tierCell(d: DepotView): Html {
  return html`${d.tier ?? '?'}${d.parent ? html` <small>below ${d.parent}</small>` : ''}${d.tierProblem ? html` <small class="err">${d.tierProblem}</small>` : ''}`;
}

function packages(all: PackageStatus[], fleet: number): Html {
  const open = all.filter((p) => p.inProgress + p.failed + p.waiting > 0);
  const done = all
    .filter((p) => p.inProgress + p.failed + p.waiting === 0)
    .sort((a, b) => b.generation - a.generation)
    .slice(0, COMPLETE_ROWS);
  const rows = [...open, ...done];
  const hidden = all.length - rows.length;
  return html`<section id="packages"><h2>Packages <small>${all.length} live version(s) on ${fleet} depot(s)</small></h2>
    <div class="scroll"><table><thead><tr><th>package</th><th>gen.</th><th>complete</th><th>in progress</th><th>failed</th><th>waiting</th></tr></thead><tbody>
    ${rows.map(
      (p) =>
        html`<tr data-package="${p.name}@${p.version}"><td>${p.name}@${p.version} <small>${formatBytes(p.totalBytes)}</small></td><td>${p.generation}</td><td>${p.complete}</td><td title="${p.inProgressDepots.join(', ')}">${p.inProgress}</td><td title="${p.failedDepots.join(
          ', ',
        )}" class="${p.failed ? 'err' : ''}">${p.failed}${p.failedDepots.length ? html` <small>${p.failedDepots.join(', ')}</small>` : ''}</td><td>${p.waiting}</td></tr>`,
    )}</tbody></table></div>${hidden > 0 ? html`<p class="quiet"><small>${hidden} older version(s), complete on every depot, not shown (GET /v1/admin/status lists all).</small></p>` : ''}
  </section>`;
}

function pending(s: FleetStatus, v: Viewer): Html {
  const admin = v.role === 'admin';
  const action = (name: string, verb: 'approve' | 'block') =>
    html`<form method="post" action="/dashboard/machines/${encodeURIComponent(name)}/${verb}"><input type="hidden" name="_csrf" value="${v.csrf}"><button type="submit" class="${verb}" data-action="${verb}">${verb}</button></form>`;
  return html`<section id="pending"><h2>Waiting for approval <small>${s.pending.length}</small></h2>
    ${
      s.pending.length === 0
        ? html`<p class="quiet">No machine is waiting.</p>`
        : html`<div class="scroll"><table><thead><tr><th>machine</th><th>role</th><th>requested</th><th>actions</th></tr></thead><tbody>
        ${s.pending.map(
          (p) =>
            html`<tr data-pending="${p.name}"><td class="name">${p.name}</td><td>${p.role}</td><td >${when(p.requestedAt)}</td><td class="actions">${
              admin
                ? html`${action(p.name, 'approve')}${action(p.name, 'block')}`
                : html`<small>admin only</small>`
            }</td></tr>`,
        )}</tbody></table></div>`
    }
  </section>`;
}

function certificates(s: FleetStatus): Html {
  return html`<section id="certificates"><h2>Certificates nearing expiry <small>${s.certificates.length}</small></h2>
    ${
      s.certificates.length === 0
        ? html`<p class="quiet">None within the warning period.</p>`
        : html`<div class="scroll"><table><thead><tr><th>subject</th><th>role</th><th>expires</th><th>days left</th></tr></thead><tbody>
        ${s.certificates.map((c) => html`<tr class="${c.daysLeft <= 15 ? 'err' : 'warn'}"><td>${c.subject}</td><td>${c.role}</td><td>${stamp(c.notAfter)}</td><td>${c.daysLeft}${c.renewRequested ? ' (renewal requested)' : ''}</td></tr>`)}
        </tbody></table></div>`
    }
  </section>`;
}

function sessions(list: ActiveSession[], v: Viewer): Html {
  return html`<section id="sessions"><h2>Active sessions <small>${list.length}</small></h2>
    <div class="scroll"><table><thead><tr><th>operator</th><th>role</th><th>from</th><th>started</th><th>last active</th><th></th></tr></thead><tbody>
    ${list.map(
      (x) =>
        html`<tr data-session="${x.id}"><td>${x.operator}${x.id === v.sessionId ? html` <small>(this one)</small>` : ''}</td><td>${x.role}</td><td>${x.address ?? '?'}</td><td>${when(x.createdAt)}</td><td>${when(x.lastSeenAt)}</td><td><form method="post" action="/dashboard/sessions/${x.id}/end"><input type="hidden" name="_csrf" value="${v.csrf}"><button type="submit">end</button></form></td></tr>`,
    )}</tbody></table></div>
  </section>`;
}

function operators(list: Operator[], nowMs: number): Html {
  const expiry = (o: Operator) => {
    if (o.tokenExpiresAt === null) return o.directoryDn ? 'directory login' : 'never';
    if (Date.parse(o.tokenExpiresAt) <= nowMs)
      return html`<b class="bad">expired ${stamp(o.tokenExpiresAt)}</b>`;
    return stamp(o.tokenExpiresAt);
  };
  return html`<section id="operators"><h2>Operators <small>${list.length}</small></h2>
    <div class="scroll"><table><thead><tr><th>operator</th><th>role</th><th>TOTP</th><th>created</th><th>last used</th><th>token expires</th></tr></thead><tbody>
    ${list.map(
      (o) =>
        html`<tr data-operator="${o.name}"><td>${o.name}${o.disabled ? html` <small>(disabled)</small>` : ''}</td><td>${o.role}</td><td>${o.hasTotp ? 'on' : 'off'}</td><td>${stamp(o.createdAt)}</td><td>${o.lastUsedAt ? when(o.lastUsedAt) : 'never'}</td><td>${expiry(o)}</td></tr>`,
    )}</tbody></table></div>
    <p class="quiet"><small>Rotate a token with <code>depotsync master operator rotate --name NAME</code>.</small></p>
  </section>`;
}

function audit(entries: AuditEntry[]): Html {
  return html`<section id="audit"><h2>Audit log <small>newest ${entries.length}</small></h2>
    <div class="scroll"><table><thead><tr><th>when</th><th>who</th><th>what</th><th>target</th><th>from</th></tr></thead><tbody>
    ${entries.map((e) => html`<tr><td >${when(e.at)}</td><td>${e.actor}</td><td>${e.action}</td><td>${e.target}</td><td>${e.address ?? ''}</td></tr>`)}
    </tbody></table></div>
  </section>`;
}
