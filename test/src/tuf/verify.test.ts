import { Metadata, MetadataKind, Timestamp, MetaFile } from '@tufjs/models';
import { describe, expect, it } from 'vitest';
import { parseEnvelope } from '../../../src/tuf/envelope.js';
import { generateKeyPair, toModelKey, type KeyPair } from '../../../src/tuf/keys.js';
import { serializeMetadata, signMetadata } from '../../../src/tuf/sign.js';
import { verifyThreshold } from '../../../src/tuf/verify.js';
import { edit } from './fixture.js';

const ctx = { role: 'timestamp', file: 'timestamp.json' };

function timestamp(signers: KeyPair[]): Uint8Array {
  const md = new Metadata(
    new Timestamp({
      version: 1,
      specVersion: '1.0.31',
      expires: '2031-01-01T00:00:00Z',
      snapshotMeta: new MetaFile({ version: 1 }),
    }),
  );
  signMetadata(
    md,
    signers.map((s) => s.signer),
  );
  return serializeMetadata(md);
}

function roleKeys(keys: KeyPair[], keyids: string[], threshold: number) {
  return { keys: Object.fromEntries(keys.map((k) => [k.keyid, toModelKey(k.publicKey)])), keyids, threshold };
}

const envelope = (bytes: Uint8Array) =>
  parseEnvelope(bytes, ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp });

describe('verifyThreshold', () => {
  const [a, b, c, stranger] = [
    generateKeyPair(),
    generateKeyPair(),
    generateKeyPair(),
    generateKeyPair(),
  ] as [KeyPair, KeyPair, KeyPair, KeyPair];

  it('accepts 2 of 3 and refuses 1 of 3 for threshold 2', () => {
    const keys = roleKeys([a, b, c], [a.keyid, b.keyid, c.keyid], 2);
    expect(verifyThreshold(envelope(timestamp([a, c])), keys).sort()).toEqual([a.keyid, c.keyid].sort());
    expect(() => verifyThreshold(envelope(timestamp([b])), keys)).toThrow(
      expect.objectContaining({ code: 'threshold-not-met' }),
    );
  });

  it('counts a key listed twice in the role once', () => {
    const keys = roleKeys([a], [a.keyid, a.keyid], 2);
    expect(() => verifyThreshold(envelope(timestamp([a])), keys)).toThrow(
      /threshold not met: 1 of 2 valid signatures/,
    );
  });

  it('refuses a file whose signatures carry one keyid twice, even when the threshold is met', () => {
    const twice = edit(timestamp([a]), (doc) => doc.signatures.push({ ...doc.signatures[0] }));
    expect(() => verifyThreshold(envelope(twice), roleKeys([a, b], [a.keyid, b.keyid], 2))).toThrow(
      expect.objectContaining({
        code: 'bad-metadata',
        message: expect.stringMatching(/two signatures carry keyid .*; a keyid may sign once/),
      }),
    );
    expect(() => verifyThreshold(envelope(twice), roleKeys([a], [a.keyid], 1))).toThrow(
      /a keyid may sign once/,
    );
  });

  it('counts one public key under two keyids once', () => {
    const keys = {
      keys: { [a.keyid]: toModelKey(a.publicKey), alias: toModelKey(a.publicKey) },
      keyids: [a.keyid, 'alias'],
      threshold: 2,
    };
    const bytes = edit(timestamp([a]), (doc) =>
      doc.signatures.push({ keyid: 'alias', sig: doc.signatures[0].sig }),
    );
    expect(() => verifyThreshold(envelope(bytes), keys)).toThrow(
      expect.objectContaining({ code: 'threshold-not-met' }),
    );
  });

  it('ignores signatures by unknown keys and names them', () => {
    const keys = roleKeys([a], [a.keyid], 1);
    const err = (() => {
      try {
        verifyThreshold(envelope(timestamp([stranger])), keys);
      } catch (e) {
        return e as Error & { code: string };
      }
      throw new Error('accepted');
    })();
    expect(err.code).toBe('unknown-key');
    expect(err.message).toBe(
      `timestamp metadata timestamp.json: threshold not met: 0 of 1 valid signatures (1 signature by unknown key ${stranger.keyid.slice(0, 8)}…)`,
    );
    // A valid signature still counts next to an unknown one.
    expect(verifyThreshold(envelope(timestamp([stranger, a])), keys)).toEqual([a.keyid]);
  });

  it('refuses a signature over other bytes (one field changed after signing)', () => {
    const tampered = edit(timestamp([a]), (doc) => (doc.signed.version = 2));
    expect(() => verifyThreshold(envelope(tampered), roleKeys([a], [a.keyid], 1))).toThrow(
      expect.objectContaining({ code: 'bad-signature' }),
    );
    const malformed = edit(timestamp([a]), (doc) => (doc.signatures[0].sig = 'zz'));
    expect(() => verifyThreshold(envelope(malformed), roleKeys([a], [a.keyid], 1))).toThrow(
      expect.objectContaining({ code: 'bad-signature' }),
    );
  });

  it('refuses a delegator threshold below 1 (it would accept unsigned metadata)', () => {
    expect(() => verifyThreshold(envelope(timestamp([])), roleKeys([a], [a.keyid], 0))).toThrow(
      expect.objectContaining({ code: 'bad-metadata' }),
    );
  });

  it('refuses oversized input before parsing and the wrong _type', () => {
    expect(() =>
      parseEnvelope(Buffer.alloc(20_000, 0x7b), ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp }),
    ).toThrow(expect.objectContaining({ code: 'too-large' }));
    expect(() =>
      parseEnvelope(timestamp([a]), ctx, { maxBytes: 16_384, type: MetadataKind.Snapshot }),
    ).toThrow(/signed._type is "timestamp", expected "snapshot"/);
    expect(() =>
      parseEnvelope(Buffer.from('{"signed":{"_type":"timestamp","x":1.5},"signatures":[]}'), ctx, {
        maxBytes: 16_384,
        type: MetadataKind.Timestamp,
      }),
    ).toThrow(/non-integer number/);
    // Duplicate keys: the signature would cover one value and the client read another.
    const twice = '{"signed":{"_type":"timestamp","version":1,"version":2},"signatures":[]}';
    expect(() =>
      parseEnvelope(Buffer.from(twice), ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp }),
    ).toThrow(/duplicate key "version"/);
    // A lone surrogate has no UTF-8 form, so no canonical bytes to verify a signature over: refused unread.
    const surrogate = '{"signed":{"_type":"timestamp","x":"\\ud800"},"signatures":[]}';
    expect(() =>
      parseEnvelope(Buffer.from(surrogate), ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp }),
    ).toThrow(/surrogate/);
  });
});
