import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MasterDb } from '../../../master/db/database.js';
import {
  approve,
  block,
  byName,
  byRequest,
  bySerial,
  certificatesOf,
  forget,
  listMachines,
  requestEnrollment,
  requestRenewal,
  revoke,
  revokedSerials,
  setCertificate,
  touch,
} from '../../../master/db/machines.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

const csr = (label: string) =>
  `-----BEGIN CERTIFICATE REQUEST-----\nMII${label}\n-----END CERTIFICATE REQUEST-----\n`;
const cert = (serial: string, days = 365) => ({
  pem: `-----BEGIN CERTIFICATE-----\nMIIcert${serial}\n-----END CERTIFICATE-----\n`,
  serial,
  notAfter: new Date(t.clock.t + days * 86_400_000),
});

describe('machines', () => {
  it('enrolls: pending with a one-time poll id, then approved with a certificate', async () => {
    const { machine, request } = await requestEnrollment(m, {
      name: 'depot-1',
      role: 'depot',
      csrPem: csr('a'),
      url: 'https://d1:8443',
      site: 'paris',
    });
    expect(machine).toMatchObject({
      name: 'depot-1',
      role: 'depot',
      state: 'pending',
      csrPem: csr('a'),
      site: 'paris',
      renewRequested: false,
    });
    expect(request).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await m.sql.get('SELECT request_hash FROM machines')).not.toEqual({ request_hash: request });
    expect((await byRequest(m, request))?.name).toBe('depot-1');
    expect(await byRequest(m, 'x'.repeat(43))).toBeUndefined();
    expect(await byRequest(m, '../etc')).toBeUndefined();

    t.clock.advance(1000);
    const approved = await approve(m, 'depot-1', { by: 'alice', certificate: cert('0A1B') });
    expect(approved).toMatchObject({
      state: 'approved',
      approvedBy: 'alice',
      approvedAt: '2030-01-01T00:00:01.000Z',
      certSerial: 'a1b',
    });
    expect((await bySerial(m, '0x0a1b'))?.machine?.name).toBe('depot-1');
    expect((await listMachines(m, { state: 'approved' })).map((x) => x.name)).toEqual(['depot-1']);
  });

  it('handles repeated and conflicting enrollment requests', async () => {
    const first = await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    const again = await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    expect((await byRequest(m, again.request))?.name).toBe('a1');
    expect(await byRequest(m, first.request)).toBeUndefined();
    // Swapping the key of a pending request would let an attacker ride on the operator's approval.
    expect(
      (
        await caught(
          async () => await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('evil') }),
        )
      ).code,
    ).toBe('conflict');
    expect(
      (await caught(async () => await requestEnrollment(m, { name: 'a1', role: 'depot', csrPem: csr('a') })))
        .message,
    ).toMatch(/different role/);
    await approve(m, 'a1', { by: 'alice' });
    expect(
      (await caught(async () => await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') })))
        .code,
    ).toBe('already-exists');
    await block(m, 'a1', { by: 'alice' });
    expect(
      (await caught(async () => await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') })))
        .message,
    ).toBe('machine a1 is blocked');
    expect(
      (
        await caught(
          async () => await requestEnrollment(m, { name: 'bad name!', role: 'agent', csrPem: csr('a') }),
        )
      ).code,
    ).toBe('bad-input');
    expect(
      (await caught(async () => await requestEnrollment(m, { name: 'a2', role: 'agent', csrPem: 'not pem' })))
        .message,
    ).toMatch(/CSR must be a PEM block/);
  });

  it('walks the state machine: block, unblock, revoke (terminal), forget', async () => {
    await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    expect((await caught(async () => await setCertificate(m, 'a1', cert('1')))).message).toMatch(
      /a1 is pending; a certificate is issued only to an approved machine/,
    );
    await approve(m, 'a1', { by: 'alice', certificate: cert('1') });
    expect(await block(m, 'a1', { by: 'bob' })).toMatchObject({ state: 'blocked', stateChangedBy: 'bob' });
    expect(await approve(m, 'a1', { by: 'carol' })).toMatchObject({
      state: 'approved',
      approvedBy: 'alice',
      stateChangedBy: 'carol',
    });
    expect((await caught(async () => await forget(m, 'a1'))).hint).toBe('revoke it first');
    const r = await revoke(m, 'a1', { by: 'bob' });
    expect(r.machine.state).toBe('revoked');
    expect(r.revokedSerials).toEqual(['1']);
    expect((await caught(async () => await approve(m, 'a1', { by: 'alice' }))).code).toBe('conflict');
    expect((await caught(async () => await block(m, 'a1', { by: 'alice' }))).code).toBe('conflict');
    expect(
      (await caught(async () => await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('b') })))
        .code,
    ).toBe('forbidden');
    await forget(m, 'a1');
    expect(await byName(m, 'a1')).toBeUndefined();
    // The revocation outlives the record, and the name can enroll again.
    expect(await revokedSerials(m)).toEqual(['1']);
    expect(await bySerial(m, '1')).toMatchObject({ certificate: { serial: '1', machine: 'a1' } });
    expect((await bySerial(m, '1'))?.machine).toBeUndefined();
    expect((await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('b') })).machine.state).toBe(
      'pending',
    );
    expect((await caught(async () => await approve(m, 'ghost', { by: 'alice' }))).code).toBe('not-found');
  });

  it('revocation covers every certificate the machine had, including ones replaced by renewal', async () => {
    await requestEnrollment(m, { name: 'd1', role: 'depot', csrPem: csr('a') });
    await approve(m, 'd1', { by: 'alice', certificate: cert('10') });
    expect(await requestRenewal(m, 'd1', csr('b'))).toMatchObject({ renewRequested: true, csrPem: csr('b') });
    t.clock.advance(1000);
    expect(await setCertificate(m, 'd1', cert('11'))).toMatchObject({
      certSerial: '11',
      renewRequested: false,
    });
    expect((await caught(async () => await setCertificate(m, 'd1', cert('11')))).message).toMatch(
      /serial 11 was already issued/,
    );
    expect((await certificatesOf(m, 'd1')).map((c) => c.serial)).toEqual(['10', '11']);
    expect(await revokedSerials(m)).toEqual([]);
    // The old certificate still maps to the machine, so the middleware can tell it is not the current one.
    expect((await bySerial(m, '10'))?.machine?.certSerial).toBe('11');

    await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('c') });
    await approve(m, 'a1', { by: 'alice', certificate: cert('20', 1) });
    expect((await revoke(m, 'd1', { by: 'bob' })).revokedSerials).toEqual(['10', '11']);
    expect((await revoke(m, 'a1', { by: 'bob' })).revokedSerials).toEqual(['20']);
    expect(await revokedSerials(m)).toEqual(['10', '11', '20']);
    expect((await revoke(m, 'd1', { by: 'bob' })).revokedSerials).toEqual([]);
    // Expired certificates drop off the list (they are refused anyway) unless asked for.
    t.clock.advance(2 * 86_400_000);
    expect(await revokedSerials(m)).toEqual(['10', '11']);
    expect(await revokedSerials(m, { includeExpired: true })).toEqual(['10', '11', '20']);
  });

  it('can list the serials of blocked machines with the revoked ones', async () => {
    await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    await approve(m, 'a1', { by: 'alice', certificate: cert('5') });
    await block(m, 'a1', { by: 'bob' });
    expect(await revokedSerials(m)).toEqual([]);
    expect(await revokedSerials(m, { includeBlocked: true })).toEqual(['5']);
    await approve(m, 'a1', { by: 'bob' });
    expect(await revokedSerials(m, { includeBlocked: true })).toEqual([]);
  });

  it('records when and from where a machine was last seen', async () => {
    await requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    t.clock.advance(5000);
    await touch(m, 'a1', '10.0.0.7');
    await touch(m, 'a1');
    expect(await byName(m, 'a1')).toMatchObject({
      lastSeen: '2030-01-01T00:00:05.000Z',
      lastAddress: '10.0.0.7',
    });
  });
});
