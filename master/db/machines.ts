import { DepotsyncError } from '../../src/errors.js';
import { setCertificate, type IssuedCertificate } from './certificates.js';
import { nowIso, transaction, type MasterDb } from './database.js';
import {
  MACHINE_ROLES,
  byName,
  mustGet,
  toMachine,
  type Machine,
  type MachineRole,
  type Row,
} from './machine-record.js';
import { hashSecret, looksLikeSecret, newSecret } from './secret.js';
import { machineName, oneOf, optional, orNull, pem, text } from './values.js';

export * from './machine-record.js';
export * from './certificates.js';

/**
 * Machines (depots and agents) and every certificate issued to them (docs/architecture.md).
 *
 *   (none) --requestEnrollment--> pending --approve--> approved <--approve-- blocked
 *                                    |                    |  ^                 ^
 *                                    +------block---------+--+------block------+
 *   any state --revoke--> revoked (terminal; `forget` removes the record so the name can enroll again)
 *
 * Blocking refuses the machine at the master but keeps its certificate; revoking marks every
 * certificate the machine ever had as revoked, so an old certificate kept after a renewal cannot
 * be used either.
 */
export interface EnrollmentInput {
  name: string;
  role: MachineRole;
  csrPem: string;
  url?: string;
  site?: string;
  parent?: string;
}

/**
 * Record an enrollment request as pending and return the poll id (`GET /v1/enroll/{request}`) once;
 * only its hash is stored. A repeat request with the same CSR (a client that lost its poll id) gets a
 * new poll id. Refused: a different CSR for a pending name (it would swap the key an operator is about
 * to approve), an enrolled name (renew over mutual TLS instead), a blocked or revoked name.
 */
export async function requestEnrollment(
  m: MasterDb,
  input: EnrollmentInput,
): Promise<{ machine: Machine; request: string }> {
  const name = machineName(input.name);
  const parent = optional(input.parent, (v) => machineName(v, 'parent'));
  const site = optional(input.site, (v) => machineName(v, 'site'));
  const url = optional(input.url, (v) => text(v, 'url', 512));
  const role = oneOf(input.role, MACHINE_ROLES, 'machine role');
  const csr = pem(input.csrPem, 'CSR');
  const request = newSecret();
  const now = nowIso(m);
  await transaction(m, async () => {
    const existing = await byName(m, name);
    if (!existing) {
      await m.sql.run(
        `INSERT INTO machines (name, role, state, request_hash, csr_pem, requested_at, state_changed_at, parent, site, url)
           VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)`,
        [name, role, hashSecret(request), csr, now, now, parent, site, url],
      );
      return;
    }
    if (existing.state === 'blocked' || existing.state === 'revoked') {
      throw new DepotsyncError('forbidden', `machine ${name} is ${existing.state}`, {
        hint:
          existing.state === 'blocked'
            ? 'ask an operator to approve it again'
            : 'ask an operator to remove the revoked record, or enroll under a new name',
      });
    }
    if (existing.state === 'approved') {
      throw new DepotsyncError('already-exists', `machine ${name} is already enrolled`, {
        hint: 'renew with the current certificate, or ask an operator to revoke and remove the old record',
      });
    }
    if (existing.role !== role || existing.csrPem !== csr) {
      throw new DepotsyncError(
        'conflict',
        `machine ${name} already has a pending request with a different ${existing.role !== role ? 'role' : 'key'}`,
        {
          hint: 'ask an operator to approve or block the pending request, or enroll under a new name',
        },
      );
    }
    await m.sql.run('UPDATE machines SET request_hash = ?, requested_at = ? WHERE name = ?', [
      hashSecret(request),
      now,
      name,
    ]);
  });
  return { machine: await mustGet(m, name), request };
}

/** The machine whose enrollment poll id is `request`, if any (hash lookup; malformed ids match nothing). */
export async function byRequest(m: MasterDb, request: string): Promise<Machine | undefined> {
  if (!looksLikeSecret(request)) return undefined;
  const r = await m.sql.get<Row>('SELECT * FROM machines WHERE request_hash = ?', [hashSecret(request)]);
  return r && toMachine(r);
}

/**
 * Approve a pending (or unblock a blocked) machine, optionally storing the certificate issued for it in
 * the same transaction. Approving an approved machine changes nothing. A revoked machine stays revoked.
 */
export async function approve(
  m: MasterDb,
  name: string,
  opts: { by: string; certificate?: IssuedCertificate },
): Promise<Machine> {
  const by = text(opts.by, 'approved by');
  return transaction(m, async () => {
    const machine = await mustGet(m, name);
    if (machine.state === 'revoked') {
      throw new DepotsyncError('conflict', `machine ${name} is revoked and cannot be approved`, {
        hint: 'remove the machine record and let it enroll again with a new key',
      });
    }
    if (machine.state !== 'approved') {
      const now = nowIso(m);
      await m.sql.run(
        `UPDATE machines SET state = 'approved', approved_at = coalesce(approved_at, ?), approved_by = coalesce(approved_by, ?),
             state_changed_at = ?, state_changed_by = ? WHERE name = ?`,
        [now, by, now, by, name],
      );
    }
    return opts.certificate ? setCertificate(m, name, opts.certificate) : mustGet(m, name);
  });
}

/**
 * An approved machine asks (over mutual TLS) for a new certificate for a new key. Without a CSR (a
 * machine a restored master adopted has none on record) only the mark is set.
 */
export async function requestRenewal(
  m: MasterDb,
  name: string,
  csrPem: string | undefined,
): Promise<Machine> {
  const csr = csrPem === undefined ? undefined : pem(csrPem, 'CSR');
  return transaction(m, async () => {
    const machine = await mustGet(m, name);
    if (machine.state !== 'approved')
      throw new DepotsyncError('forbidden', `machine ${name} is ${machine.state} and cannot renew`);
    await m.sql.run(
      'UPDATE machines SET csr_pem = coalesce(?, csr_pem), renew_requested = 1 WHERE name = ?',
      [csr ?? null, name],
    );
    return mustGet(m, name);
  });
}

export async function block(m: MasterDb, name: string, opts: { by: string }): Promise<Machine> {
  const by = text(opts.by, 'blocked by');
  return transaction(m, async () => {
    const machine = await mustGet(m, name);
    if (machine.state === 'revoked')
      throw new DepotsyncError('conflict', `machine ${name} is already revoked`);
    if (machine.state !== 'blocked') {
      await m.sql.run(
        "UPDATE machines SET state = 'blocked', state_changed_at = ?, state_changed_by = ? WHERE name = ?",
        [nowIso(m), by, name],
      );
    }
    return mustGet(m, name);
  });
}

/** Revoke a machine and every certificate it was ever issued; returns the serials newly revoked. */
export async function revoke(
  m: MasterDb,
  name: string,
  opts: { by: string },
): Promise<{ machine: Machine; revokedSerials: string[] }> {
  const by = text(opts.by, 'revoked by');
  return transaction(m, async () => {
    const machine = await mustGet(m, name);
    const now = nowIso(m);
    if (machine.state !== 'revoked') {
      await m.sql.run(
        "UPDATE machines SET state = 'revoked', state_changed_at = ?, state_changed_by = ? WHERE name = ?",
        [now, by, name],
      );
    }
    const serials = (
      await m.sql.all<{ serial: string }>(
        'SELECT serial FROM certificates WHERE machine = ? AND revoked_at IS NULL ORDER BY serial',
        [name],
      )
    ).map((r) => r.serial);
    await m.sql.run('UPDATE certificates SET revoked_at = ? WHERE machine = ? AND revoked_at IS NULL', [
      now,
      name,
    ]);
    return { machine: await mustGet(m, name), revokedSerials: serials };
  });
}

/** Remove a pending or revoked machine's record (its certificate history, and so its revocations, stay). */
export async function forget(m: MasterDb, name: string): Promise<void> {
  await transaction(m, async () => {
    const machine = await mustGet(m, name);
    if (machine.state !== 'pending' && machine.state !== 'revoked') {
      throw new DepotsyncError(
        'conflict',
        `machine ${name} is ${machine.state}; only a pending or revoked machine can be removed`,
        {
          hint: 'revoke it first',
        },
      );
    }
    await m.sql.run('DELETE FROM machines WHERE name = ?', [name]);
  });
}

/** Note that a machine was seen (a request over mutual TLS). */
export async function touch(m: MasterDb, name: string, address?: string): Promise<void> {
  await m.sql.run(
    'UPDATE machines SET last_seen = ?, last_address = coalesce(?, last_address) WHERE name = ?',
    [nowIso(m), orNull(address), name],
  );
}
