import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildManifest, decodeManifest, encodeManifest } from '../../src/content/manifest.js';
import { parseStrictJson } from '../../src/content/strict-json.js';
import { jsonish, mutated, onlyTyped, params } from './fuzz.js';

const CHUNKING = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 };
const id = (n: number) => n.toString(16).padStart(64, '0');
const valid = encodeManifest(
  buildManifest({
    name: 'tool',
    version: '1.0',
    chunking: CHUNKING,
    files: [
      {
        path: 'bin/tool',
        mode: 0o755,
        size: 100_000,
        chunks: [
          { id: id(1), length: 60_000 },
          { id: id(2), length: 40_000 },
        ],
      },
      { path: 'README.txt', mode: 0o644, size: 5, chunks: [{ id: id(3), length: 5 }] },
    ],
  }),
);

describe('fuzz: strict JSON', () => {
  const opts = { maxBytes: 64 * 1024, what: 'fuzzed document' };
  it('arbitrary bytes: a value or a typed refusal', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => void onlyTyped(() => parseStrictJson(b, opts))),
      params,
    );
  });
  it('JSON-like text with edits: same as JSON.parse when it accepts, typed refusals otherwise', () => {
    const text = fc
      .oneof(
        fc.json(),
        jsonish.map((v) => JSON.stringify(v) ?? 'null'),
      )
      .chain((t) => mutated(Buffer.from(t)));
    fc.assert(
      fc.property(text, (b) => {
        const r = onlyTyped(() => parseStrictJson(b, opts));
        if (!(r instanceof Error)) expect(r).toEqual(JSON.parse(b.toString('utf8')));
      }),
      params,
    );
  });
  it('deep nesting and huge documents are refused, not recursed into or read', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom('[', '{"a":'), (depth, open) => {
        const r = onlyTyped(() =>
          parseStrictJson(Buffer.from(open.repeat(depth)), { maxBytes: 1 << 20, what: 'deep' }),
        );
        expect(r).toBeInstanceOf(Error);
      }),
      { ...params, numRuns: Math.min(params.numRuns, 200) },
    );
  });
});

describe('fuzz: manifests', () => {
  it('decodes the valid sample', () => {
    expect(decodeManifest(valid).files).toHaveLength(2);
  });
  it('edited manifests: decoded or refused with a typed error', () => {
    fc.assert(
      fc.property(mutated(valid), (b) => void onlyTyped(() => decodeManifest(b))),
      params,
    );
  });
  it('arbitrary JSON values as manifests', () => {
    fc.assert(
      fc.property(
        jsonish,
        (v) => void onlyTyped(() => decodeManifest(Buffer.from(JSON.stringify(v) ?? 'null'))),
      ),
      params,
    );
  });
  it('manifest-shaped objects with fields replaced', () => {
    const base = JSON.parse(valid.toString('utf8')) as Record<string, unknown>;
    const keys = Object.keys(base);
    fc.assert(
      fc.property(fc.constantFrom(...keys), jsonish, (k, v) => {
        const doc = { ...base, [k]: v };
        void onlyTyped(() => decodeManifest(Buffer.from(JSON.stringify(doc))));
      }),
      params,
    );
  });
});
