import { DepotsyncError } from '../../src/errors.js';
import type { MasterDb } from './database.js';
import { orUndefined } from './values.js';

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

export async function byName(m: MasterDb, name: string): Promise<Machine | undefined> {
  const r = await m.sql.get<Row>('SELECT * FROM machines WHERE name = ?', [name]);
  return r && toMachine(r);
}

export async function mustGet(m: MasterDb, name: string): Promise<Machine> {
  const found = await byName(m, name);
  if (!found)
    throw new DepotsyncError('not-found', `machine ${name} is not known`, {
      hint: 'list machines to see the enrolled names',
    });
  return found;
}

/** Machines by name; optionally one role and/or state. */
export async function listMachines(
  m: MasterDb,
  filter: { role?: MachineRole; state?: MachineState } = {},
): Promise<Machine[]> {
  const where: string[] = [];
  const params: string[] = [];
  if (filter.role !== undefined) {
    where.push('role = ?');
    params.push(filter.role);
  }
  if (filter.state !== undefined) {
    where.push('state = ?');
    params.push(filter.state);
  }
  const rows = await m.sql.all<Row>(
    `SELECT * FROM machines${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY name`,
    params,
  );
  return rows.map(toMachine);
}
