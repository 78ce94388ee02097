import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueMachineCertificate, loadCa } from '../../../src/pki/ca.js';
import { certificateInfo } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { installCredentials, recoverCredentials, renewalAt, renewalDue } from '../../../src/net/renewal.js';
import { tempDir } from '../../helpers/tmp.js';

const DAY = 86_400_000;

describe('renewal: the two-thirds rule', () => {
  const life = {
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2026-01-01T00:00:00Z').getTime() + 300 * DAY,
  };
  const cert = { notBefore: life.notBefore, notAfter: new Date(life.notAfter) };

  it('is due from notBefore + 2/3 of the lifetime on, judged by the injected clock', () => {
    expect(renewalAt(cert).toISOString()).toBe('2026-07-20T00:00:00.000Z'); // 200 of 300 days
    expect(renewalDue(cert, new Date(cert.notBefore.getTime() + 199 * DAY))).toBe(false);
    expect(renewalDue(cert, new Date(cert.notBefore.getTime() + 200 * DAY - 1))).toBe(false);
    expect(renewalDue(cert, new Date(cert.notBefore.getTime() + 200 * DAY))).toBe(true);
    expect(renewalDue(cert, new Date(cert.notAfter.getTime() + DAY))).toBe(true); // expired: still "due" (the master refuses it)
  });

  it('applies to a real certificate of any lifetime, and refuses a nonsensical fraction', () => {
    const ca = loadCa(
      ...(({ keyPem, certPem }) => [keyPem, certPem] as const)(createCa({ commonName: 'test CA' })),
    );
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'agent-1', role: 'agent' });
    const now = new Date('2026-03-01T00:00:00Z');
    const info = certificateInfo(
      issueMachineCertificate(ca, csrPem, { machineName: 'agent-1', role: 'agent', validDays: 30, now }),
    );
    expect(renewalDue(info, new Date(now.getTime() + 19 * DAY))).toBe(false);
    expect(renewalDue(info, new Date(now.getTime() + 21 * DAY))).toBe(true);
    expect(() => renewalAt(info, 1)).toThrow(/between 0 and 1/);
  });
});

describe('renewal: installing the new key and certificate', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  const ca = loadCa(
    ...(({ keyPem, certPem }) => [keyPem, certPem] as const)(createCa({ commonName: 'test CA' })),
  );
  const pair = () => {
    const { keyPem, csrPem } = createMachineKeyAndCsr({
      machineName: 'depot-1',
      role: 'depot',
      dnsNames: ['localhost'],
    });
    return {
      keyPem,
      csrPem,
      certPem: issueMachineCertificate(ca, csrPem, { machineName: 'depot-1', role: 'depot' }),
    };
  };
  let n = 0;
  const files = () => {
    n += 1;
    const f = {
      key: join(tmp.dir, `k${n}.pem`),
      cert: join(tmp.dir, `c${n}.pem`),
      csr: join(tmp.dir, `r${n}.csr`),
    };
    const old = pair();
    writeFileSync(f.key, old.keyPem, { mode: 0o600 });
    writeFileSync(f.cert, old.certPem);
    return { f, old };
  };

  it('replaces key, certificate and CSR; the key stays private; nothing is left behind', async () => {
    const { f } = files();
    const next = pair();
    await installCredentials(f, next);
    expect(readFileSync(f.key, 'utf8')).toBe(next.keyPem);
    expect(readFileSync(f.cert, 'utf8')).toBe(next.certPem);
    expect(readFileSync(f.csr, 'utf8')).toBe(next.csrPem);
    expect(statSync(f.key).mode & 0o777).toBe(0o600);
    expect(existsSync(`${f.key}.next`) || existsSync(`${f.cert}.next`)).toBe(false);
    expect(recoverCredentials(f)).toBe('none');
  });

  it('a crash before the commit point keeps the old pair; after it, the new pair is completed', () => {
    // Crashed after writing key.next only: dropped.
    const a = files();
    writeFileSync(`${a.f.key}.next`, pair().keyPem);
    expect(recoverCredentials(a.f)).toBe('discarded');
    expect(readFileSync(a.f.key, 'utf8')).toBe(a.old.keyPem);
    expect(existsSync(`${a.f.key}.next`)).toBe(false);

    // Crashed with both .next files written: completed.
    const b = files();
    const nb = pair();
    writeFileSync(`${b.f.key}.next`, nb.keyPem);
    writeFileSync(`${b.f.cert}.next`, nb.certPem);
    expect(recoverCredentials(b.f)).toBe('completed');
    expect([readFileSync(b.f.key, 'utf8'), readFileSync(b.f.cert, 'utf8')]).toEqual([nb.keyPem, nb.certPem]);

    // Crashed between the two renames (the key is new already): completed.
    const c = files();
    const nc = pair();
    writeFileSync(c.f.key, nc.keyPem);
    writeFileSync(`${c.f.cert}.next`, nc.certPem);
    expect(recoverCredentials(c.f)).toBe('completed');
    expect(readFileSync(c.f.cert, 'utf8')).toBe(nc.certPem);

    // A certificate.next that does not belong to the key is not installed.
    const d = files();
    writeFileSync(`${d.f.cert}.next`, pair().certPem);
    expect(recoverCredentials(d.f)).toBe('discarded');
    expect([readFileSync(d.f.key, 'utf8'), readFileSync(d.f.cert, 'utf8')]).toEqual([
      d.old.keyPem,
      d.old.certPem,
    ]);
  });
});
