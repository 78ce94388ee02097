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
beforeEach(() => {
  t = testMaster();
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
  it('enrolls: pending with a one-time poll id, then approved with a certificate', () => {
    const { machine, request } = requestEnrollment(m, {
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
    expect(m.db.prepare('SELECT request_hash FROM machines').get()).not.toEqual({ request_hash: request });
    expect(byRequest(m, request)?.name).toBe('depot-1');
    expect(byRequest(m, 'x'.repeat(43))).toBeUndefined();
    expect(byRequest(m, '../etc')).toBeUndefined();

    t.clock.advance(1000);
    const approved = approve(m, 'depot-1', { by: 'alice', certificate: cert('0A1B') });
    expect(approved).toMatchObject({
      state: 'approved',
      approvedBy: 'alice',
      approvedAt: '2030-01-01T00:00:01.000Z',
      certSerial: 'a1b',
    });
    expect(bySerial(m, '0x0a1b')?.machine?.name).toBe('depot-1');
    expect(listMachines(m, { state: 'approved' }).map((x) => x.name)).toEqual(['depot-1']);
  });

  it('handles repeated and conflicting enrollment requests', () => {
    const first = requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    const again = requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    expect(byRequest(m, again.request)?.name).toBe('a1');
    expect(byRequest(m, first.request)).toBeUndefined();
    // Swapping the key of a pending request would let an attacker ride on the operator's approval.
    expect(caught(() => requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('evil') })).code).toBe(
      'conflict',
    );
    expect(
      caught(() => requestEnrollment(m, { name: 'a1', role: 'depot', csrPem: csr('a') })).message,
    ).toMatch(/different role/);
    approve(m, 'a1', { by: 'alice' });
    expect(caught(() => requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') })).code).toBe(
      'already-exists',
    );
    block(m, 'a1', { by: 'alice' });
    expect(caught(() => requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') })).message).toBe(
      'machine a1 is blocked',
    );
    expect(
      caught(() => requestEnrollment(m, { name: 'bad name!', role: 'agent', csrPem: csr('a') })).code,
    ).toBe('bad-input');
    expect(
      caught(() => requestEnrollment(m, { name: 'a2', role: 'agent', csrPem: 'not pem' })).message,
    ).toMatch(/CSR must be a PEM block/);
  });

  it('walks the state machine: block, unblock, revoke (terminal), forget', () => {
    requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    expect(caught(() => setCertificate(m, 'a1', cert('1'))).message).toMatch(
      /a1 is pending; a certificate is issued only to an approved machine/,
    );
    approve(m, 'a1', { by: 'alice', certificate: cert('1') });
    expect(block(m, 'a1', { by: 'bob' })).toMatchObject({ state: 'blocked', stateChangedBy: 'bob' });
    expect(approve(m, 'a1', { by: 'carol' })).toMatchObject({
      state: 'approved',
      approvedBy: 'alice',
      stateChangedBy: 'carol',
    });
    expect(caught(() => forget(m, 'a1')).hint).toBe('revoke it first');
    const r = revoke(m, 'a1', { by: 'bob' });
    expect(r.machine.state).toBe('revoked');
    expect(r.revokedSerials).toEqual(['1']);
    expect(caught(() => approve(m, 'a1', { by: 'alice' })).code).toBe('conflict');
    expect(caught(() => block(m, 'a1', { by: 'alice' })).code).toBe('conflict');
    expect(caught(() => requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('b') })).code).toBe(
      'forbidden',
    );
    forget(m, 'a1');
    expect(byName(m, 'a1')).toBeUndefined();
    // The revocation outlives the record, and the name can enroll again.
    expect(revokedSerials(m)).toEqual(['1']);
    expect(bySerial(m, '1')).toMatchObject({ certificate: { serial: '1', machine: 'a1' } });
    expect(bySerial(m, '1')?.machine).toBeUndefined();
    expect(requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('b') }).machine.state).toBe(
      'pending',
    );
    expect(caught(() => approve(m, 'ghost', { by: 'alice' })).code).toBe('not-found');
  });

  it('revocation covers every certificate the machine had, including ones replaced by renewal', () => {
    requestEnrollment(m, { name: 'd1', role: 'depot', csrPem: csr('a') });
    approve(m, 'd1', { by: 'alice', certificate: cert('10') });
    expect(requestRenewal(m, 'd1', csr('b'))).toMatchObject({ renewRequested: true, csrPem: csr('b') });
    t.clock.advance(1000);
    expect(setCertificate(m, 'd1', cert('11'))).toMatchObject({ certSerial: '11', renewRequested: false });
    expect(caught(() => setCertificate(m, 'd1', cert('11'))).message).toMatch(/serial 11 was already issued/);
    expect(certificatesOf(m, 'd1').map((c) => c.serial)).toEqual(['10', '11']);
    expect(revokedSerials(m)).toEqual([]);
    // The old certificate still maps to the machine, so the middleware can tell it is not the current one.
    expect(bySerial(m, '10')?.machine?.certSerial).toBe('11');

    requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('c') });
    approve(m, 'a1', { by: 'alice', certificate: cert('20', 1) });
    expect(revoke(m, 'd1', { by: 'bob' }).revokedSerials).toEqual(['10', '11']);
    expect(revoke(m, 'a1', { by: 'bob' }).revokedSerials).toEqual(['20']);
    expect(revokedSerials(m)).toEqual(['10', '11', '20']);
    expect(revoke(m, 'd1', { by: 'bob' }).revokedSerials).toEqual([]);
    // Expired certificates drop off the list (they are refused anyway) unless asked for.
    t.clock.advance(2 * 86_400_000);
    expect(revokedSerials(m)).toEqual(['10', '11']);
    expect(revokedSerials(m, { includeExpired: true })).toEqual(['10', '11', '20']);
  });

  it('can list the serials of blocked machines with the revoked ones', () => {
    requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    approve(m, 'a1', { by: 'alice', certificate: cert('5') });
    block(m, 'a1', { by: 'bob' });
    expect(revokedSerials(m)).toEqual([]);
    expect(revokedSerials(m, { includeBlocked: true })).toEqual(['5']);
    approve(m, 'a1', { by: 'bob' });
    expect(revokedSerials(m, { includeBlocked: true })).toEqual([]);
  });

  it('records when and from where a machine was last seen', () => {
    requestEnrollment(m, { name: 'a1', role: 'agent', csrPem: csr('a') });
    t.clock.advance(5000);
    touch(m, 'a1', '10.0.0.7');
    touch(m, 'a1');
    expect(byName(m, 'a1')).toMatchObject({ lastSeen: '2030-01-01T00:00:05.000Z', lastAddress: '10.0.0.7' });
  });
});
