import { constants, createPrivateKey, sign } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type CaMaterial } from '../../../src/pki/ca.js';
import { canonicalize } from '../../../src/content/canonical-json.js';
import { createRevocationList, isRevoked, verifyRevocationList } from '../../../src/wire/revocations.js';
import { expectError } from '../../helpers/errors.js';

describe('signed revocation list', () => {
  let ca: CaMaterial;
  let other: CaMaterial;
  const now = new Date('2026-03-01T12:00:00Z');

  beforeAll(() => {
    ca = createCa({ commonName: 'CA' });
    other = createCa({ commonName: 'other CA' });
  });

  it('round trips, normalising serials (00AB == ab, case-insensitive)', () => {
    const bytes = createRevocationList(ca, ['00AB', 'ff01', 'ab'], 3, { now, validDays: 7 });
    const doc = JSON.parse(bytes.toString());
    expect(doc.signed).toEqual({
      version: 3,
      issued: '2026-03-01T12:00:00.000Z',
      expires: '2026-03-08T12:00:00.000Z',
      serials: ['ab', 'ff01'],
    });
    expect(doc.signature.alg).toBe('RS256');
    const list = verifyRevocationList(bytes, ca.certPem, { now, minVersion: 3 });
    expect(list.version).toBe(3);
    expect(isRevoked(list, 'AB')).toBe(true);
    expect(isRevoked(list, '00ff01')).toBe(true);
    expect(isRevoked(list, 'ac')).toBe(false);
    expect(list.expires.toISOString()).toBe('2026-03-08T12:00:00.000Z');
  });

  it('verifies independently of formatting (the signature covers canonical bytes)', () => {
    const doc = JSON.parse(createRevocationList(ca, ['01'], 1, { now }).toString());
    const reformatted = Buffer.from(
      JSON.stringify({
        signature: doc.signature,
        signed: {
          serials: doc.signed.serials,
          expires: doc.signed.expires,
          issued: doc.signed.issued,
          version: 1,
        },
      }),
    );
    expect(verifyRevocationList(reformatted, ca.certPem, { now }).serials.has('1')).toBe(true);
  });

  it('refuses a tampered list (a serial removed to un-revoke a machine)', () => {
    const doc = JSON.parse(createRevocationList(ca, ['0a', '0b'], 2, { now }).toString());
    doc.signed.serials = ['a'];
    expectError(
      () => verifyRevocationList(Buffer.from(JSON.stringify(doc)), ca.certPem, { now }),
      'bad-signature',
      /revocation list.*signature does not verify/,
    );
  });

  it('refuses a list signed by another CA', () => {
    expectError(
      () => verifyRevocationList(createRevocationList(other, [], 1, { now }), ca.certPem, { now }),
      'bad-signature',
      /does not verify/,
    );
  });

  it('refuses a rollback to an older version', () => {
    const old = createRevocationList(ca, [], 4, { now });
    expectError(
      () => verifyRevocationList(old, ca.certPem, { now, minVersion: 5 }),
      'version-rollback',
      /version 4 is older than version 5/,
    );
  });

  it('refuses an expired list (freeze)', () => {
    const bytes = createRevocationList(ca, [], 1, { now, validDays: 1 });
    expectError(
      () => verifyRevocationList(bytes, ca.certPem, { now: new Date('2026-03-02T12:00:00Z') }),
      'expired',
      /expired at 2026-03-02T12:00:00.000Z/,
    );
  });

  it('refuses too-large, non-JSON and malformed lists before trusting them', () => {
    const bytes = createRevocationList(ca, ['1', '2', '3'], 1, { now });
    expectError(
      () => verifyRevocationList(bytes, ca.certPem, { now, maxBytes: 50 }),
      'too-large',
      /revocation list.*is over the limit of 50 bytes/,
    );
    expectError(
      () => verifyRevocationList(Buffer.from('{"signed":'), ca.certPem, { now }),
      'bad-json',
      /revocation list/,
    );
    expectError(
      () => verifyRevocationList(Buffer.from('[]'), ca.certPem, { now }),
      'bad-metadata',
      /"signed" and "signature"/,
    );
    const doc = JSON.parse(bytes.toString());
    doc.signature.alg = 'none';
    expectError(
      () => verifyRevocationList(Buffer.from(JSON.stringify(doc)), ca.certPem, { now }),
      'bad-metadata',
      /alg "none"/,
    );
  });

  it('accepts a PS256 signature too, and checks fields after the signature', () => {
    const signed = {
      version: 2,
      issued: now.toISOString(),
      expires: '2026-04-01T00:00:00.000Z',
      serials: ['00C0FFEE'],
    };
    const value = sign('sha256', Buffer.from(canonicalize(signed)), {
      key: createPrivateKey(ca.keyPem),
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    }).toString('base64');
    const list = verifyRevocationList(
      Buffer.from(JSON.stringify({ signed, signature: { alg: 'PS256', value } })),
      ca.certPem,
      { now },
    );
    expect(isRevoked(list, 'c0ffee')).toBe(true);
    const badSigned = { ...signed, version: 0 };
    const v2 = sign('sha256', Buffer.from(canonicalize(badSigned)), createPrivateKey(ca.keyPem)).toString(
      'base64',
    );
    expectError(
      () =>
        verifyRevocationList(
          Buffer.from(JSON.stringify({ signed: badSigned, signature: { alg: 'RS256', value: v2 } })),
          ca.certPem,
          { now },
        ),
      'bad-metadata',
      /signed.version/,
    );
  });

  it('refuses a list that only a lax parser reads as one value', () => {
    const text = createRevocationList(ca, ['ab'], 1, { now }).toString();
    // A second "signed": JSON.parse would verify one and use the other.
    const twice = text.replace('"signed": {', '"signed": {"version": 1}, "signed": {');
    expectError(
      () => verifyRevocationList(Buffer.from(twice), ca.certPem, { now }),
      'bad-json',
      /duplicate key "signed"/,
    );
    expectError(
      () =>
        verifyRevocationList(Buffer.from(text.replace('"version": 1', '"version": 1.0')), ca.certPem, {
          now,
        }),
      'bad-json',
      /non-integer/,
    );
    // A lone surrogate in the signed part has no canonical form: refused before the signature check.
    const doc = JSON.parse(text);
    doc.signed.note = '\ud800';
    expectError(
      () => verifyRevocationList(Buffer.from(JSON.stringify(doc)), ca.certPem, { now }),
      'bad-json',
      /surrogate/,
    );
  });
});
