import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { normalizeSerial } from '../../src/pki/cert-info.js';
import type { Logger } from '../../src/log.js';
import type { CertifiedPeer } from '../../src/serve/mtls.js';
import { recordAudit } from '../db/audit.js';
import { setCertificate } from '../db/certificates.js';
import { transaction, type MasterDb } from '../db/database.js';
import { byName } from '../db/machines.js';
import type { RestoreRecord } from './epoch.js';

/**
 * Certificates the lost master issued after the backup, met by the restored one. The CA key came back
 * with the backup, so such a certificate chains to the CA and is in date, but its serial is not in the
 * restored database. A user expects those machines to go on working, so the restored master adopts a
 * certificate when it was issued inside the gap (from the backup's time to the restore; the CA
 * back-dates notBefore by 5 minutes, allowed for) and the machine is not blocked or revoked on record:
 *   - a machine on record (approved, same role): a renewal made after the backup; the certificate is
 *     added to its history (and becomes current when it ends later);
 *   - a machine not on record: enrolled after the backup; it is recorded as approved by "restore".
 * Every adoption is audit-logged (`machine.adopt`). A certificate issued before the backup that the
 * database does not know (a machine removed on purpose) stays refused, as do pending/blocked/revoked
 * machines.
 */
const BACKDATE_MS = 5 * 60_000;

export type Adopt = (peer: CertifiedPeer, socket: TLSSocket | undefined) => Promise<boolean>;

export function certificateAdopter(db: MasterDb, record: RestoreRecord, log: Logger): Adopt {
  const from = Date.parse(record.backupCreatedAt) - BACKDATE_MS;
  const until = Date.parse(record.restoredAt);
  return async (peer, socket) => {
    const t = peer.notBefore.getTime();
    if (!(t >= from && t <= until) || !peer.role || !socket) return false;
    const raw = socket.getPeerCertificate()?.raw;
    if (!raw || raw.length === 0) return false;
    const pem = new X509Certificate(raw).toString();
    try {
      return await transaction(db, async () => {
        const known = await byName(db, peer.commonName);
        if (known && (known.state !== 'approved' || known.role !== peer.role)) return false;
        if (!known) {
          const now = new Date().toISOString();
          await db.sql.run(
            `INSERT INTO machines (name, role, state, requested_at, approved_at, approved_by, state_changed_at, state_changed_by)
               VALUES (?, ?, 'approved', ?, ?, 'restore', ?, 'restore')`,
            [peer.commonName, peer.role, now, now, now],
          );
        }
        const current = known?.certNotAfter ? Date.parse(known.certNotAfter) : -Infinity;
        if (peer.notAfter.getTime() > current) {
          await setCertificate(db, peer.commonName, { pem, serial: peer.serial, notAfter: peer.notAfter });
        } else {
          await db.sql.run(
            'INSERT INTO certificates (serial, machine, issued_at, not_after) VALUES (?, ?, ?, ?)',
            [
              normalizeSerial(peer.serial),
              peer.commonName,
              new Date(t + BACKDATE_MS).toISOString(),
              peer.notAfter.toISOString(),
            ],
          );
        }
        await recordAudit(db, {
          actor: 'restore',
          action: 'machine.adopt',
          target: peer.commonName,
          detail: {
            serial: peer.serial,
            role: peer.role,
            newMachine: !known,
            backupCreatedAt: record.backupCreatedAt,
          },
        });
        log.info(
          { machine: peer.commonName, role: peer.role, serial: peer.serial, newMachine: !known },
          'adopted a certificate issued after the backup',
        );
        return true;
      });
    } catch (e) {
      log.warn({ err: (e as Error).message, machine: peer.commonName }, 'could not adopt a certificate');
      return false;
    }
  };
}
