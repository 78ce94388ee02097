import { describe, expect, it } from 'vitest';
import { canonicalize } from '../../../src/content/canonical-json.js';
import { verifyInclusion } from '../../../src/content/hash-tree.js';
import {
  buildManifest,
  decodeManifest,
  encodeManifest,
  manifestChunks,
  manifestId,
  manifestTree,
  normalizeMode,
  uniqueChunkIds,
  type BuildManifestInput,
  type ChunkRef,
  type Manifest,
} from '../../../src/content/manifest.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { errorOf } from './helpers.js';

const chunking = { minBytes: 16_384, avgBytes: 65_536, maxBytes: 262_144 };
const cid = (s: string): string => blake3Hex(Buffer.from(s));
const chunks = (prefix: string, lengths: number[]): ChunkRef[] =>
  lengths.map((length, i) => ({ id: cid(`${prefix}${i}`), length }));
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

function input(): BuildManifestInput {
  return {
    name: 'firefox',
    version: '128.0.1',
    chunking,
    files: [
      { path: 'setup.exe', mode: 0o755, size: sum([70_000, 1_000]), chunks: chunks('s', [70_000, 1_000]) },
      { path: 'docs/README.txt', mode: 0o644, size: 20_000, chunks: chunks('r', [20_000]) },
      { path: 'empty.cfg', mode: 0o644, size: 0, chunks: [] },
      // A chunk shared with setup.exe (same content twice).
      { path: 'bin/copy.exe', mode: 0o755, size: 70_000, chunks: chunks('s', [70_000]) },
    ],
  };
}

/** The wire object of a manifest, to edit fields before encoding it (canonically) as an attacker would. */
function wire(m: Manifest): Record<string, any> {
  return JSON.parse(encodeManifest(m).toString('utf8')) as Record<string, any>;
}

const decode = (v: unknown): Manifest => decodeManifest(canonicalize(v));

describe('build, encode, decode', () => {
  it('round-trips build → encode → decode → encode to identical bytes', () => {
    const m = buildManifest(input());
    const bytes = encodeManifest(m);
    const back = decodeManifest(bytes);
    expect(back).toEqual(m);
    expect(encodeManifest(back)).toEqual(bytes);
    expect(manifestId(bytes)).toBe(blake3Hex(bytes));
    expect(manifestId(bytes)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('sorts files by path and computes totals and the tree', () => {
    const m = buildManifest(input());
    expect(m.files.map((f) => f.path)).toEqual(['bin/copy.exe', 'docs/README.txt', 'empty.cfg', 'setup.exe']);
    expect(m.totalBytes).toBe(161_000);
    expect(m.tree.count).toBe(4);
    expect(m.format).toBe(1);
    // The same files in another order give the same bytes, so the same id.
    const reversed = input();
    reversed.files.reverse();
    expect(encodeManifest(buildManifest(reversed))).toEqual(encodeManifest(m));
  });

  it('is compact: one base64 string of 36-byte records per file', () => {
    const m = buildManifest(input());
    const w = wire(m);
    expect(typeof w.files[3].chunks).toBe('string');
    expect(Buffer.from(w.files[3].chunks as string, 'base64')).toHaveLength(72);
    expect(Buffer.from(w.files[3].chunks as string, 'base64').readUInt32BE(68)).toBe(1_000);
    expect(w.files[2].chunks).toBe('');
    expect(Object.keys(w)).toEqual(['chunking', 'files', 'format', 'name', 'totalBytes', 'tree', 'version']);
  });

  it('stays under 800 KB for 16,384 chunks (a 1 GiB package at 64 KiB)', () => {
    const lengths = Array.from({ length: 16_384 }, () => 65_536);
    const big = lengths.map((length, i) => ({ id: i.toString(16).padStart(64, 'a'), length }));
    const m = buildManifest({
      name: 'big',
      version: '1',
      chunking,
      files: [{ path: 'big.iso', mode: 0o644, size: sum(lengths), chunks: big }],
    });
    const bytes = encodeManifest(m);
    expect(bytes.length).toBeLessThan(800_000);
    expect(bytes.length).toBeGreaterThan(16_384 * 48); // base64 of 36 bytes per chunk
    expect(encodeManifest(decodeManifest(bytes)).equals(bytes)).toBe(true); // (toEqual on 786 kB is slow)
  });
});

describe('untrusted manifests', () => {
  const good = (): Record<string, any> => wire(buildManifest(input()));

  it('refuses a ../../etc/passwd path and lists every bad field in one error', () => {
    const w = good();
    w.files[2].path = '../../etc/passwd';
    w.files[3].size = -1;
    w.files[0].mode = 0o4755;
    const e = errorOf(() => decode(w));
    expect(e.code).toBe('bad-input');
    expect(e.message).toBe(
      'manifest: files[0].mode: expected 420 (0o644) or 493 (0o755), got 2541; ' +
        'files[2].path: "../../etc/passwd": ".." segment not allowed; ' +
        'files[3].size: expected integer 0..2^53 − 1, got -1',
    );
    expect(e.hint).toContain('do not install from this source');
  });

  it('refuses absolute and backslash paths', () => {
    for (const [path, reason] of [
      ['/etc/cron.d/evil', 'absolute path not allowed'],
      ['..\\..\\Windows\\System32\\evil.dll', 'backslash not allowed'],
      ['C:evil.dll', 'drive letter not allowed'],
    ]) {
      const w = good();
      w.files[2].path = path;
      const e = errorOf(() => decode(w));
      expect(e.code).toBe('bad-input');
      expect(e.message).toContain(`files[2].path: ${JSON.stringify(path)}: ${reason}`);
    }
  });

  it('refuses two paths equal ignoring case, and a file that is also a folder', () => {
    const w = good();
    w.files[2].path = 'docs/readme.txt'; // sorts after docs/README.txt
    let e = errorOf(() => decode(w));
    expect(e.code).toBe('bad-input');
    expect(e.message).toBe(
      'manifest: files[2].path: "docs/readme.txt" is the same file as "docs/README.txt" ignoring case',
    );
    const build = input();
    (build.files[0] as { path: string }).path = 'DOCS';
    e = errorOf(() => buildManifest(build));
    expect(e.message).toContain('"DOCS" is a file, so it cannot also be a folder of "docs/README.txt"');
  });

  it('refuses duplicate JSON keys', () => {
    const bytes = encodeManifest(buildManifest(input()));
    const text = bytes.toString('utf8').replace('"name":"firefox"', '"name":"firefox","name":"evil"');
    const e = errorOf(() => decodeManifest(Buffer.from(text)));
    expect(e.code).toBe('bad-json');
    expect(e.message).toBe(`manifest: duplicate key "name" at byte ${text.indexOf('"name":"evil"')}`);
  });

  it('refuses a 2 GiB document by its size before parsing', () => {
    const huge = new Proxy(Buffer.alloc(0), {
      get: (t, prop) => {
        if (prop === 'length') return 2 ** 31;
        throw new Error(`read ${String(prop)}`);
      },
    });
    const e = errorOf(() => decodeManifest(huge, { maxBytes: 8 * 1024 * 1024 }));
    expect(e.code).toBe('too-large');
    expect(e.message).toBe('manifest: 2147483648 bytes is over the limit of 8388608 bytes');
    expect(errorOf(() => decodeManifest(huge)).message).toContain('over the limit of 100663296 bytes');
  });

  it('refuses non-integer numbers', () => {
    const text = encodeManifest(buildManifest(input())).toString('utf8').replace('"size":0', '"size":0.5');
    const e = errorOf(() => decodeManifest(Buffer.from(text)));
    expect(e.code).toBe('bad-json');
    expect(e.message).toContain(
      'manifest: non-integer number (fractions and exponents are not accepted) at byte',
    );
  });

  it('refuses a tree root that does not match the chunk list', () => {
    const w = good();
    w.tree.root = cid('forged');
    let e = errorOf(() => decode(w));
    expect(e.code).toBe('hash-mismatch');
    expect(e.message).toBe('manifest "firefox"@"128.0.1": manifest tree root does not match its chunk list');
    // Swapping the chunk lists of two files keeps every other field valid but changes the leaf order.
    const w2 = good();
    [w2.files[0].chunks, w2.files[1].chunks] = [w2.files[1].chunks, w2.files[0].chunks];
    [w2.files[0].size, w2.files[1].size] = [w2.files[1].size, w2.files[0].size];
    e = errorOf(() => decode(w2));
    expect(e.code).toBe('hash-mismatch');
  });

  it('refuses a second byte form of the same manifest', () => {
    const bytes = encodeManifest(buildManifest(input()));
    const spaced = Buffer.from(JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 1));
    const e = errorOf(() => decodeManifest(spaced));
    expect(e.code).toBe('bad-input');
    expect(e.message).toBe(
      'manifest: not in canonical JSON form (sorted keys, no whitespace, minimal escapes)',
    );
    const escaped = Buffer.from(bytes.toString('utf8').replace('"firefox"', '"fire\\u0066ox"'));
    expect(errorOf(() => decodeManifest(escaped)).message).toContain('not in canonical JSON form');
  });

  it('refuses chunk lists that are not canonical base64 records', () => {
    const w = good();
    const b64 = w.files[3].chunks as string;
    w.files[3].chunks = `${b64}\n`; // Node's decoder would skip the newline
    const b64b = w.files[1].chunks as string;
    w.files[1].chunks = `${b64b.slice(0, 10)}*${b64b.slice(10)}`; // and the bad character
    w.files[2].chunks = ['not', 'a', 'string'];
    w.files[0].chunks = Buffer.alloc(35).toString('base64');
    // Not through canonicalize, which has no form for the newline: the decoder must refuse such bytes.
    const e = errorOf(() => decodeManifest(Buffer.from(JSON.stringify(w))));
    expect(e.code).toBe('bad-input');
    expect(e.message).toContain('files[0].chunks: 35 bytes is not a whole number of 36-byte chunk records');
    expect(e.message).toContain('files[1].chunks: not canonical base64');
    expect(e.message).toContain('files[2].chunks: expected a base64 string');
    expect(e.message).toContain('files[3].chunks: not canonical base64');
  });

  it('refuses sizes that do not add up, oversized chunks, wrong totals and counts', () => {
    const w = good();
    w.files[3].size += 1;
    const rec = Buffer.from(w.files[1].chunks as string, 'base64');
    rec.writeUInt32BE(262_145, 32);
    w.files[1].chunks = rec.toString('base64');
    w.totalBytes = 5;
    w.tree.count = 9;
    const e = errorOf(() => decode(w));
    expect(e.message).toContain(
      'files[1].chunks[0].length: expected integer 1..262144 (chunking.maxBytes), got 262145',
    );
    expect(e.message).toContain('files[3].size: 71001 is not the sum of its chunk lengths (71000)');
    const w2 = good();
    w2.totalBytes = 5;
    w2.tree.count = 9;
    const e2 = errorOf(() => decode(w2));
    expect(e2.message).toBe(
      'manifest: totalBytes: 5 is not the sum of the file sizes (161000); tree.count: 9 is not the number of chunks (4)',
    );
  });

  it('refuses unknown fields, a newer format, bad names and bad shapes', () => {
    const w = good();
    w.signedBy = 'me';
    w.files[0].owner = 'root';
    w.name = '../evil';
    w.chunking.minBytes = 0;
    expect(errorOf(() => decode(w)).message).toBe(
      'manifest: signedBy: unknown field; name: "../evil": only letters, digits and . _ + - are allowed; ' +
        'chunking.minBytes: expected integer 1..67108864, got 0; files[0].owner: unknown field',
    );
    const w2 = good();
    w2.format = 2;
    const e2 = errorOf(() => decode(w2));
    expect(e2.message).toBe('manifest: format 2 is not supported (this depotsync reads format 1)');
    expect(e2.hint).toBe('upgrade depotsync on this machine');
    expect(errorOf(() => decode([1])).message).toBe('manifest: expected a JSON object');
    const w3 = good();
    w3.files = [];
    expect(errorOf(() => decode(w3)).message).toContain('files: a package needs at least one file');
    const w4 = good();
    w4.files = [w4.files[1], w4.files[0], w4.files[2], w4.files[3]];
    expect(errorOf(() => decode(w4)).message).toContain('files[1].path: "bin/copy.exe" is out of order');
    expect(errorOf(() => decode({ ...good(), tree: { count: 4, root: 'AB' } })).message).toContain(
      'tree.root: expected 64 lower-case hex digits, got "AB"',
    );
  });

  it('caps the length of an error listing thousands of bad fields', () => {
    const w = good();
    w.files = Array.from({ length: 5_000 }, (_, i) => ({
      path: `../${i}`,
      mode: 0o644,
      size: 0,
      chunks: '',
    }));
    const e = errorOf(() => decode(w));
    expect(e.message).toMatch(/; and 4950 more problems$/);
    expect(e.message.length).toBeLessThan(5_000);
  });
});

describe('buildManifest', () => {
  it('validates the publisher input, listing every problem', () => {
    const bad = input();
    bad.name = '-rf';
    bad.files[0] = { ...(bad.files[0] as BuildManifestInput['files'][number]), mode: 0o777 };
    bad.files[1] = { ...(bad.files[1] as BuildManifestInput['files'][number]), size: 1 };
    (bad.files[2] as { chunks: ChunkRef[] }).chunks = [{ id: 'XYZ', length: 1 }];
    (bad.files[2] as { size: number }).size = 1;
    const e = errorOf(() => buildManifest(bad));
    expect(e.code).toBe('bad-input');
    expect(e.message).toMatch(
      /^manifest for "-rf"@"128.0.1": name: "-rf": must not start with a dot or a dash; /,
    );
    expect(e.message).toContain('expected 420 (0o644) or 493 (0o755), got 511');
    expect(e.message).toContain('size: 1 is not the sum of its chunk lengths (20000)');
    expect(e.message).toContain('chunks[0].id: expected 64 lower-case hex digits, got "XYZ"');
    expect(e.hint).toContain('publish again');
  });

  it('normalises stat modes to 0o644 or 0o755', () => {
    expect(normalizeMode(0o100644)).toBe(0o644);
    expect(normalizeMode(0o100664)).toBe(0o644);
    expect(normalizeMode(0o104755)).toBe(0o755);
    expect(normalizeMode(0o100700)).toBe(0o755);
  });
});

describe('helpers', () => {
  it('lists chunks with file offsets, unique ids, and proofs against the manifest root', () => {
    const m = buildManifest(input());
    const all = manifestChunks(m);
    expect(all.map((c) => [c.fileIndex, c.offset, c.length])).toEqual([
      [0, 0, 70_000],
      [1, 0, 20_000],
      [3, 0, 70_000],
      [3, 70_000, 1_000],
    ]);
    expect(uniqueChunkIds(m)).toEqual([cid('s0'), cid('r0'), cid('s1')]);
    const tree = manifestTree(m);
    const root = Buffer.from(m.tree.root, 'hex');
    all.forEach((c, i) =>
      expect(verifyInclusion(root, i, m.tree.count, Buffer.from(c.id, 'hex'), tree.proof(i))).toBe(true),
    );
  });
});
