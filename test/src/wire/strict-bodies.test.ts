import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SETTINGS_FILE_BYTES, readJsonFile } from '../../../src/config/json-file.js';
import { isDepotsyncError } from '../../../src/errors.js';
import { HttpClient } from '../../../src/net/client.js';
import { httpErrorFor } from '../../../src/net/http-error.js';
import { MAX_ADMIN_BODY_BYTES, parseTokenRequest, parseUnpublishRequest } from '../../../src/wire/admin.js';
import { parseBatchRequest } from '../../../src/wire/chunk-batch.js';
import { decodeJson, Fields } from '../../../src/wire/decode.js';
import { MAX_ENROLL_BODY_BYTES, parseEnrollReply, parseEnrollRequest } from '../../../src/wire/enroll.js';
import { decodeErrorBody } from '../../../src/wire/error-body.js';
import {
  decodeEnrollRequest as decodeEnrollRequestFile,
  decodeStatusFile,
  encodeStatusFile,
  MAX_ENROLL_REQUEST_BYTES,
  MAX_STATUS_FILE_BYTES,
  OFFLINE_FILE_FORMAT,
  STATUS_FILE_TYPE,
} from '../../../src/wire/offline-files.js';
import { MAX_RENEW_BODY_BYTES, parseRenewRequest } from '../../../src/wire/renew.js';
import { MAX_STATUS_BODY_BYTES, parseStatusReport, type StatusReport } from '../../../src/wire/status.js';
import { tempDir } from '../../helpers/tmp.js';

/** The error `fn` throws: a DepotsyncError with `code` whose message matches every pattern. */
function refused(fn: () => unknown, code: string, ...patterns: RegExp[]): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected an error').toBeDefined();
  expect(isDepotsyncError(thrown) ? thrown.code : thrown).toBe(code);
  for (const p of patterns) expect((thrown as Error).message).toMatch(p);
}

const enc = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8');
/** A JSON object padded past `bytes` with a long string field. */
const oversized = (bytes: number): Buffer => enc({ pad: 'x'.repeat(bytes) });
const ID = 'ab'.repeat(32);

const report: StatusReport = {
  servedGeneration: 3,
  targetGeneration: 4,
  bytesFetched: 10,
  chunksFetched: 1,
  bytesRemaining: 0,
  scrubOk: 0,
  scrubFailed: 0,
  freeDiskBytes: 1,
  reportedAt: '2026-03-01T12:00:00.000Z',
  sequence: 7,
};

describe('decodeJson: the one path from untrusted bytes to a typed value', () => {
  const decode = (bytes: Uint8Array) =>
    decodeJson(bytes, { what: 'thing', maxBytes: 64 }, (v) => {
      const f = Fields.of('thing', v);
      const out = { a: f.string('a'), b: f.int('b') };
      f.done();
      return out;
    });

  it('caps the size before parsing, refuses lax JSON, then names every bad field', () => {
    expect(decode(enc({ a: 'x', b: 1 }))).toEqual({ a: 'x', b: 1 });
    refused(() => decode(oversized(64)), 'too-large', /thing: \d+ bytes is over the limit of 64 bytes/);
    refused(() => decode(enc('{"a":"x","a":"y","b":1}')), 'bad-json', /thing: duplicate key "a" at byte 9/);
    refused(() => decode(enc('{"a":"x","b":1.5}')), 'bad-json', /non-integer number/);
    refused(() => decode(Buffer.from([0x7b, 0xff, 0x7d])), 'bad-json', /invalid UTF-8 at byte 1/);
    refused(
      () => decode(enc({ a: 1, b: 'x' })),
      'bad-input',
      /a: expected a string, got number/,
      /b: expected an integer/,
    );
  });
});

describe('request bodies', () => {
  it('chunk batch request: strict, capped, every bad id named', () => {
    expect(parseBatchRequest(enc({ ids: [ID] }), 10, 4096)).toEqual({ ids: [ID], zstd: false });
    expect(parseBatchRequest(enc({ ids: [ID], encodings: ['zstd'] }), 10, 4096)).toEqual({
      ids: [ID],
      zstd: true,
    });
    // Names this server does not know are ignored (the sender gets what both know).
    expect(parseBatchRequest(enc({ ids: [ID], encodings: ['lzma9'] }), 10, 4096)).toEqual({
      ids: [ID],
      zstd: false,
    });
    refused(
      () => parseBatchRequest(enc({ ids: [ID], encodings: 'zstd' }), 10, 4096),
      'bad-input',
      /encodings: expected a short list/,
    );
    refused(
      () => parseBatchRequest(enc({ ids: [ID, 'x'.repeat(5000)] }), 10, 4096),
      'too-large',
      /chunk batch request: .* over the limit of 4096 bytes/,
    );
    refused(
      () => parseBatchRequest(enc(`{"ids":[],"ids":["${ID}"]}`), 10, 4096),
      'bad-json',
      /duplicate key "ids"/,
    );
    refused(
      () => parseBatchRequest(enc({ ids: [ID, 'nope', 7] }), 10, 4096),
      'bad-input',
      /ids\[1\] is not a chunk id/,
      /ids\[2\] is not a chunk id/,
    );
    refused(() => parseBatchRequest(enc({ ids: ID }), 10, 4096), 'bad-input', /ids: expected a list/);
    refused(
      () => parseBatchRequest(enc({ ids: [], more: 1 }), 10, 4096),
      'bad-input',
      /unknown field "more"/,
    );
    refused(() => parseBatchRequest(enc({ ids: [ID, ID, ID] }), 2, 4096), 'too-large', /ids: 3 ids, limit 2/);
  });

  it('status report: strict, capped, every bad field named; the raw value kept', () => {
    const { report: r, raw } = parseStatusReport(enc(report));
    expect(r).toEqual(report);
    expect(raw).toEqual(report);
    refused(
      () => parseStatusReport(oversized(MAX_STATUS_BODY_BYTES), 'status report from d1'),
      'too-large',
      /status report from d1: .* over the limit/,
    );
    refused(
      () => parseStatusReport(enc('{"sequence":1,"sequence":2}')),
      'bad-json',
      /duplicate key "sequence"/,
    );
    refused(
      () => parseStatusReport(enc({ ...report, sequence: 0, servedGeneration: 'x', upstream: '../evil' })),
      'bad-input',
      /servedGeneration: expected an integer/,
      /sequence: expected an integer from 1/,
      /upstream: does not match/,
    );
  });

  it('enrollment request: strict, capped, every bad field named', () => {
    const good = { name: 'depot-1', role: 'depot', csr: 'PEM' };
    expect(parseEnrollRequest(enc(good))).toEqual(good);
    refused(
      () => parseEnrollRequest(oversized(MAX_ENROLL_BODY_BYTES)),
      'too-large',
      /enrollment request: .* over the limit/,
    );
    refused(
      () => parseEnrollRequest(enc('{"name":"a","name":"b","role":"depot","csr":"x"}')),
      'bad-json',
      /duplicate key "name"/,
    );
    refused(
      () => parseEnrollRequest(enc({ name: 'a b', role: 'master', csr: 1, url: 'http://x' })),
      'bad-input',
      /name: does not match/,
      /role: expected one of depot, agent/,
      /csr: expected a string/,
      /url: does not match/,
    );
  });

  it('renewal request: strict, capped, the field named', () => {
    expect(parseRenewRequest(enc({ csr: 'PEM' }))).toEqual({ csr: 'PEM' });
    refused(
      () => parseRenewRequest(oversized(MAX_RENEW_BODY_BYTES), 'renewal request of d1'),
      'too-large',
      /renewal request of d1/,
    );
    refused(() => parseRenewRequest(enc('{"csr":"a","csr":"b"}')), 'bad-json', /duplicate key "csr"/);
    refused(() => parseRenewRequest(enc({ csr: null })), 'bad-input', /csr: expected a string, got null/);
  });
});

describe('admin API bodies', () => {
  it('token request: strict, capped, every bad field named', () => {
    expect(parseTokenRequest(enc({ role: 'agent' }))).toEqual({ role: 'agent' });
    expect(parseTokenRequest(enc({ role: 'depot', ttlMs: 1000 }))).toEqual({ role: 'depot', ttlMs: 1000 });
    refused(
      () => parseTokenRequest(oversized(MAX_ADMIN_BODY_BYTES)),
      'too-large',
      /token request: .* over the limit/,
    );
    refused(
      () => parseTokenRequest(enc('{"role":"agent","role":"depot"}')),
      'bad-json',
      /duplicate key "role"/,
    );
    refused(
      () => parseTokenRequest(enc({ role: 'master', ttlMs: 0 })),
      'bad-input',
      /role: expected one of depot, agent/,
      /ttlMs: expected an integer from 1/,
    );
  });

  it('unpublish request: strict, capped, every bad field named', () => {
    expect(parseUnpublishRequest(enc({ name: 'firefox', version: '1.0' }))).toEqual({
      name: 'firefox',
      version: '1.0',
    });
    refused(
      () => parseUnpublishRequest(oversized(MAX_ADMIN_BODY_BYTES)),
      'too-large',
      /unpublish request: .* over the limit/,
    );
    refused(
      () => parseUnpublishRequest(enc({ name: 1 })),
      'bad-input',
      /name: expected a string, got number/,
      /version: expected a string, got undefined/,
    );
  });
});

describe('response bodies', () => {
  it('enrollment reply: strict, capped, every bad field named', () => {
    const good = { state: 'pending', request: 'r1', name: 'depot-1' };
    expect(parseEnrollReply(enc(good), 'enrollment')).toEqual(good);
    refused(
      () => parseEnrollReply(oversized(MAX_ENROLL_BODY_BYTES), 'enrollment'),
      'too-large',
      /enrollment: .* over the limit/,
    );
    refused(
      () => parseEnrollReply(enc('{"state":"pending","state":"approved"}'), 'enrollment status'),
      'bad-json',
      /enrollment status: duplicate key "state"/,
    );
    refused(
      () => parseEnrollReply(enc({ state: 'maybe', request: 5, name: 'd' }), 'enrollment'),
      'bad-input',
      /state: expected one of/,
      /request: expected a string/,
    );
  });

  it('error body: advisory fields, cut; anything else gives no fields', () => {
    expect(decodeErrorBody(enc({ error: { code: 'revoked', message: 'm', hint: 'h' } }), 1024)).toEqual({
      code: 'revoked',
      message: 'm',
      hint: 'h',
    });
    expect(decodeErrorBody(enc({ error: { code: 'c'.repeat(100), message: 5 } }), 1024)).toEqual({
      code: 'c'.repeat(64),
    });
    expect(decodeErrorBody(enc('{"error":{"code":"a","code":"b"}}'), 1024)).toBeUndefined();
    expect(decodeErrorBody(enc({ error: { code: 'x' } }), 10)).toBeUndefined();
    expect(decodeErrorBody(enc('not json'), 1024)).toBeUndefined();
    // The HTTP error then falls back on the status (and on a short printable text body).
    const dup = httpErrorFor('GET /x', 403, enc('{"error":{"code":"revoked","code":"fine"}}'));
    expect(dup.code).toBe('forbidden');
    expect(dup.serverCode).toBeUndefined();
    expect(httpErrorFor('GET /x', 404, enc('no such thing')).message).toBe('GET /x: 404 no such thing');
  });

  describe('HttpClient JSON responses', () => {
    let server: http.Server;
    let url = '';
    beforeAll(async () => {
      server = http.createServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/dup') res.end('{"generation":1,"generation":2}');
        else if (req.url === '/float') res.end('{"generation":1e3}');
        else if (req.url === '/big') res.end(JSON.stringify({ pad: 'x'.repeat(2000) }));
        else res.end('{"generation":1}');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    const failure = (p: Promise<unknown>) =>
      p.then(
        () => {
          throw new Error('expected a failure');
        },
        (e: unknown) => e as Error & { code: string },
      );

    it('parses strictly, naming the request', async () => {
      const c = new HttpClient({ baseUrl: url });
      try {
        expect(await c.getJson('/ok', { maxBytes: 1024, what: 'state' })).toEqual({ generation: 1 });
        const dup = await failure(c.getJson('/dup', { maxBytes: 1024, what: 'state' }));
        expect(dup.code).toBe('bad-json');
        expect(dup.message).toMatch(/state: response: duplicate key "generation" at byte 16/);
        expect((await failure(c.postJson('/float', {}, { maxBytes: 1024, what: 'post' }))).message).toMatch(
          /post: response: non-integer/,
        );
        expect((await failure(c.getJson('/big', { maxBytes: 1024, what: 'state' }))).code).toBe('too-large');
      } finally {
        c.close();
      }
    });
  });
});

describe('files from another machine', () => {
  it('enrollment request file: strict, capped, every bad field named', () => {
    refused(
      () => decodeEnrollRequestFile(oversized(MAX_ENROLL_REQUEST_BYTES)),
      'too-large',
      /enrollment request file: .* over the limit/,
    );
    refused(
      () => decodeEnrollRequestFile(enc('{"name":"a","name":"b"}')),
      'bad-json',
      /duplicate key "name"/,
    );
    refused(
      () =>
        decodeEnrollRequestFile(
          enc({
            _type: 'other',
            formatVersion: 99,
            name: 'x',
            role: 'depot',
            csr: 'c',
            rootFingerprint: 'no',
            createdAt: 'now',
          }),
        ),
      'bad-input',
      /_type: expected one of depotsync-enroll-request/,
      /formatVersion: expected an integer from 1/,
      /rootFingerprint: does not match/,
      /createdAt: does not match/,
    );
  });

  it('status file: strict, capped; a control character in lastError is written as a space', () => {
    const signed = {
      _type: STATUS_FILE_TYPE,
      formatVersion: OFFLINE_FILE_FORMAT,
      machine: 'd1',
      certSerial: 'ab',
      report: { ...report, lastError: 'a\nb' },
    };
    const bytes = encodeStatusFile(signed, () => Buffer.from('sig'));
    const decoded = decodeStatusFile(bytes);
    expect(decoded.signed.report.lastError).toBe('a b');
    refused(
      () => decodeStatusFile(oversized(MAX_STATUS_FILE_BYTES)),
      'too-large',
      /status file: .* over the limit/,
    );
    const twice = bytes.toString('utf8').replace('"machine":"d1"', '"machine":"d1","machine":"d2"');
    refused(() => decodeStatusFile(enc(twice)), 'bad-json', /status file: duplicate key "machine"/);
  });
});

describe('settings files (written by ourselves, read the same way)', () => {
  it('refuses a key written twice and an oversized file, tolerates a byte order mark', () => {
    const { dir, cleanup } = tempDir();
    try {
      const file = join(dir, 'depot.json');
      writeFileSync(file, '\ufeff{"name":"d1"}');
      expect(readJsonFile(file, { what: 'depot config' })).toEqual({ name: 'd1' });
      writeFileSync(file, '{"name":"d1","name":"d2"}');
      refused(
        () => readJsonFile(file, { what: 'depot config' }),
        'bad-json',
        /depot config .*depot.json is not valid JSON .*duplicate key "name"/,
      );
      refused(
        () => readJsonFile(file, { what: 'x', badJson: (r) => ({ message: `bad: ${r}` }) }),
        'bad-json',
        /bad: x .* duplicate key/,
      );
      writeFileSync(file, JSON.stringify({ pad: 'x'.repeat(MAX_SETTINGS_FILE_BYTES) }));
      refused(() => readJsonFile(file, { what: 'depot config' }), 'too-large', /over the limit/);
    } finally {
      cleanup();
    }
  });
});
