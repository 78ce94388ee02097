import { MetadataKind } from '@tufjs/models';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/tuf/keys.js';
import { decodeSigned, parseEnvelope } from '../../src/tuf/envelope.js';
import { BatchDecoder, encodeRecordHeader } from '../../src/wire/chunk-batch.js';
import {
  DeltaDecoder,
  decodeDeltaSection,
  encodeDeltaRecord,
  encodeDeltaRequest,
  parseDeltaRequest,
} from '../../src/wire/chunk-delta.js';
import {
  decodeHeader,
  decodePreamble,
  encodeHeader,
  encodePreamble,
  type BundleSigned,
} from '../../src/wire/bundle.js';
import { decodeEnrollReply, decodeEnrollRequest } from '../../src/wire/enroll.js';
import { decodeEvent, SseDecoder } from '../../src/wire/events.js';
import {
  decodeEnrollRequest as decodeEnrollRequestFile,
  decodeStatusFile,
} from '../../src/wire/offline-files.js';
import { decodeStatusReport } from '../../src/wire/status.js';
import { jsonish, mutated, onlyTyped, params, shaped } from './fuzz.js';

const hex = (n: number) => n.toString(16).padStart(64, '0');
const ids = [hex(1), hex(2), hex(3)];
/** Split bytes into network pieces at the given cut points. */
const pieces = (b: Buffer, cuts: number[]) => {
  const at = [...new Set(cuts.map((c) => (b.length ? c % b.length : 0)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of at) {
    out.push(b.subarray(from, c));
    from = c;
  }
  out.push(b.subarray(from));
  return out;
};

describe('fuzz: chunk batches', () => {
  const valid = Buffer.concat([
    encodeRecordHeader(ids[0]!, 5),
    Buffer.from('hello'),
    encodeRecordHeader(ids[1]!, undefined),
    encodeRecordHeader(ids[2]!, 3),
    Buffer.from('abc'),
  ]);
  it('decodes the valid sample', () => {
    const d = new BatchDecoder(ids, 1024);
    expect(d.push(valid).map((r) => r.data?.toString())).toEqual(['hello', undefined, 'abc']);
    d.finish();
  });
  it('edited or arbitrary responses, in arbitrary pieces: records or a typed refusal, memory capped per record', () => {
    const body = fc.oneof(
      mutated(valid),
      fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
    );
    fc.assert(
      fc.property(body, fc.array(fc.nat(), { maxLength: 6 }), (b, cuts) => {
        const d = new BatchDecoder(ids, 1024);
        void onlyTyped(() => {
          let n = 0;
          for (const p of pieces(b, cuts))
            for (const r of d.push(p))
              (expect(r.data === undefined || r.data.length <= 1024).toBe(true), n++);
          d.finish();
          expect(n).toBe(ids.length);
        });
      }),
      params,
    );
  });
});

describe('fuzz: chunk deltas', () => {
  it('requests: pairs or a typed refusal', () => {
    const valid = encodeDeltaRequest([
      { target: hex(1), bases: [hex(2)], offset: 0 },
      { target: hex(3), bases: [hex(4), hex(5)], offset: 10 },
    ]);
    const body = fc.oneof(
      mutated(valid),
      jsonish.map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
      fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
    );
    expect(parseDeltaRequest(valid)).toHaveLength(2);
    fc.assert(
      fc.property(body, (b) => void onlyTyped(() => parseDeltaRequest(b))),
      params,
    );
  });
  it('responses in pieces: records or a typed refusal', () => {
    const base = Buffer.alloc(4000, 7);
    const target = Buffer.from(base);
    target.write('changed', 1000);
    const valid = Buffer.concat([
      ...encodeDeltaRecord(ids[0]!, target, base, 0, 16),
      ...encodeDeltaRecord(ids[1]!, undefined, undefined),
      ...encodeDeltaRecord(ids[2]!, Buffer.from('xyz'), undefined),
    ]);
    const whole = new DeltaDecoder(ids, 8192);
    expect(whole.push(valid)).toHaveLength(3);
    whole.finish();
    fc.assert(
      fc.property(mutated(valid), fc.array(fc.nat(), { maxLength: 6 }), (b, cuts) => {
        const d = new DeltaDecoder(ids, 8192);
        void onlyTyped(() => {
          for (const p of pieces(b, cuts)) d.push(p);
          d.finish();
        });
      }),
      params,
    );
  });
  it('bundle delta sections', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 70_000 }),
        (u, n) => void onlyTyped(() => decodeDeltaSection(Buffer.from(u), n, 'fuzzed section')),
      ),
      params,
    );
  });
});

describe('fuzz: JSON messages (status reports, enrollment requests and replies, offline files)', () => {
  const status = [
    'sequence',
    'reportedAt',
    'servedGeneration',
    'targetGeneration',
    'lastSuccess',
    'lastError',
    'bytesFetched',
    'chunksFetched',
    'bytesRemaining',
    'freeDiskBytes',
    'scrubOk',
    'scrubFailed',
    'upstream',
    'master',
    'validUntil',
  ];
  const request = ['name', 'role', 'csr', 'token', 'site', 'url', 'parent'];
  const reply = ['request', 'state', 'certificate', 'caCertificate', 'message'];
  it('status reports', () => {
    fc.assert(
      fc.property(fc.oneof(shaped(status), jsonish), (v) => void onlyTyped(() => decodeStatusReport(v))),
      params,
    );
  });
  it('enrollment requests and replies', () => {
    fc.assert(
      fc.property(fc.oneof(shaped(request), jsonish), (v) => void onlyTyped(() => decodeEnrollRequest(v))),
      params,
    );
    fc.assert(
      fc.property(fc.oneof(shaped(reply), jsonish), (v) => void onlyTyped(() => decodeEnrollReply(v))),
      params,
    );
  });
  it('offline enrollment request and status files', () => {
    const file = [
      '_type',
      'formatVersion',
      'name',
      'role',
      'csr',
      'rootFingerprint',
      'createdAt',
      'signed',
      'signature',
      'certificate',
    ];
    const bytes = fc.oneof(
      shaped(file).map((o) => Buffer.from(JSON.stringify(o))),
      fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
      shaped(['signed', 'signatures', 'certificate']).map((o) =>
        Buffer.from(JSON.stringify({ ...o, signed: { ...(o.signed as object), _type: 'depotsync-status' } })),
      ),
    );
    fc.assert(
      fc.property(bytes, (b) => void onlyTyped(() => decodeEnrollRequestFile(b))),
      params,
    );
    fc.assert(
      fc.property(bytes, (b) => void onlyTyped(() => decodeStatusFile(b))),
      params,
    );
  });
});

describe('fuzz: event streams', () => {
  it('bytes in pieces through the SSE decoder, then each event decoded: events or typed refusals, lines capped', () => {
    const text = fc.array(
      fc.oneof(
        fc.constantFrom(
          'event: generation\n',
          'event: sync-now\n',
          'data: {"generation":3}\n',
          'data: {"generation":-1}\n',
          '\n',
          ': ping\n',
          'id: 1\n',
          'retry: 5\n',
        ),
        fc.string({ maxLength: 30 }),
        jsonish.map((v) => `data: ${JSON.stringify(v)}\n`),
      ),
      { maxLength: 20 },
    );
    fc.assert(
      fc.property(text, fc.array(fc.nat(), { maxLength: 5 }), (parts, cuts) => {
        const d = new SseDecoder({ maxLineBytes: 512, maxEventBytes: 2048 });
        void onlyTyped(() => {
          for (const p of pieces(Buffer.from(parts.join('')), cuts))
            for (const raw of d.push(p)) void onlyTyped(() => decodeEvent(raw));
        });
      }),
      params,
    );
  });
});

describe('fuzz: TUF envelopes and bundle headers', () => {
  const key = generateKeyPair();
  const ctx = { role: 'timestamp', file: 'timestamp.json' };
  const envelope = Buffer.from(
    JSON.stringify({
      signed: {
        _type: 'timestamp',
        spec_version: '1.0.31',
        version: 3,
        expires: '2030-01-01T00:00:00Z',
        meta: { 'snapshot.json': { version: 3 } },
      },
      signatures: [{ keyid: key.keyid, sig: 'ab'.repeat(64) }],
    }),
  );
  it('envelopes: parsed and decoded, or a typed refusal', () => {
    expect(
      decodeSigned(
        parseEnvelope(envelope, ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp }),
        'timestamp',
        [],
      ).signed.version,
    ).toBe(3);
    fc.assert(
      fc.property(
        fc.oneof(
          mutated(envelope),
          shaped(['signed', 'signatures']).map((o) => Buffer.from(JSON.stringify(o))),
        ),
        (b) => {
          const env = onlyTyped(() =>
            parseEnvelope(b, ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp }),
          );
          if (!(env instanceof Error))
            void onlyTyped(() =>
              decodeSigned(
                env,
                'timestamp',
                env.signatures.map((s) => s.keyid),
              ),
            );
        },
      ),
      params,
    );
  });
  it('timestamp fields replaced one at a time', () => {
    const signed = JSON.parse(envelope.toString()).signed as Record<string, unknown>;
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(signed), 'extra'), jsonish, (k, v) => {
        const b = Buffer.from(JSON.stringify({ signed: { ...signed, [k]: v }, signatures: [] }));
        const env = onlyTyped(() =>
          parseEnvelope(b, ctx, { maxBytes: 16_384, type: MetadataKind.Timestamp }),
        );
        if (!(env instanceof Error)) void onlyTyped(() => decodeSigned(env, 'timestamp', []));
      }),
      params,
    );
  });
  it('bundle preambles and headers', () => {
    const signed: BundleSigned = {
      _type: 'depotsync-bundle',
      formatVersion: 1,
      purpose: 'update',
      depot: 'ship',
      fromGeneration: 0,
      toGeneration: 2,
      timestampVersion: 2,
      rootVersion: 1,
      issuedAt: '2026-12-07T00:00:00Z',
      validUntil: '2027-01-07T00:00:00Z',
      sectionBytes: 10,
      sections: [{ kind: 'metadata', name: '1.root.json', offset: 0, length: 10, sha256: 'a'.repeat(64) }],
    } as BundleSigned;
    let header: Buffer;
    try {
      header = encodeHeader(signed, [key.signer]);
    } catch {
      header = Buffer.from(JSON.stringify({ signed, signatures: [] }));
    }
    expect(decodeHeader(header, 'bundle').signed.depot).toBe('ship');
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 40 }),
        (u) => void onlyTyped(() => decodePreamble(u, 'fuzzed bundle')),
      ),
      params,
    );
    expect(decodePreamble(encodePreamble(header.length), 'bundle')).toBe(header.length);
    fc.assert(
      fc.property(
        fc.oneof(
          mutated(header),
          shaped(Object.keys(signed)).map((o) => Buffer.from(JSON.stringify({ signed: o, signatures: [] }))),
        ),
        fc.option(fc.nat()),
        (b, size) => void onlyTyped(() => decodeHeader(b, 'fuzzed bundle', size ?? undefined)),
      ),
      params,
    );
  });
});
