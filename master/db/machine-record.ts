import { DepotsyncError } from '../../src/errors.js';
import { statement, type MasterDb } from './database.js';
import { orNull, orUndefined } from './values.js';

/** The machine record as stored, and reads of it (machines.ts changes it). */
export type MachineRole = 'depot' | 'agent';
export type MachineState = 'pending' | 'approved' | 'blocked' | 'revoked';
export const MACHINE_ROLES: readonly MachineRole[] = ['depot', 'agent'];
export const MACHINE_STATES: readonly MachineState[] = ['pending', 'approved', 'blocked', 'revoked'];

export interface Machine {
  name: string;
  role: MachineRole;
  state: MachineState;
  csrPem?: string;
  certPem?: string;
  certSerial?: string;
  certNotAfter?: string;
  requestedAt: string;
  approvedAt?: string;
  approvedBy?: string;
  stateChangedAt: string;
  stateChangedBy?: string;
  lastSeen?: string;
  lastAddress?: string;
  renewRequested: boolean;
  parent?: string;
  site?: string;
  url?: string;
}

export type Row = Record<string, string | number | null>;

export function toMachine(r: Row): Machine {
  const m: Machine = {
    name: r.name as string,
    role: r.role as MachineRole,
    state: r.state as MachineState,
    requestedAt: r.requested_at as string,
    stateChangedAt: r.state_changed_at as string,
    renewRequested: r.renew_requested === 1,
  };
  const optional: [keyof Machine, string][] = [
    ['csrPem', 'csr_pem'],
    ['certPem', 'cert_pem'],
    ['certSerial', 'cert_serial'],
    ['certNotAfter', 'cert_not_after'],
    ['approvedAt', 'approved_at'],
    ['approvedBy', 'approved_by'],
    ['stateChangedBy', 'state_changed_by'],
    ['lastSeen', 'last_seen'],
    ['lastAddress', 'last_address'],
    ['parent', 'parent'],
    ['site', 'site'],
    ['url', 'url'],
  ];
  for (const [key, col] of optional) {
    const v = orUndefined(r[col] ?? null);
    if (v !== undefined) (m as unknown as Record<string, unknown>)[key] = v;
  }
  return m;
}

export function byName(m: MasterDb, name: string): Machine | undefined {
  const r = statement(m, 'SELECT * FROM machines WHERE name = ?').get(name) as Row | undefined;
  return r && toMachine(r);
}

export function mustGet(m: MasterDb, name: string): Machine {
  const found = byName(m, name);
  if (!found)
    throw new DepotsyncError('not-found', `machine ${name} is not known`, {
      hint: 'list machines to see the enrolled names',
    });
  return found;
}

/** Machines by name; optionally one role and/or state. */
export function listMachines(
  m: MasterDb,
  filter: { role?: MachineRole; state?: MachineState } = {},
): Machine[] {
  const rows = m.db
    .prepare(
      'SELECT * FROM machines WHERE (@role IS NULL OR role = @role) AND (@state IS NULL OR state = @state) ORDER BY name',
    )
    .all({ role: orNull(filter.role), state: orNull(filter.state) }) as Row[];
  return rows.map(toMachine);
}
