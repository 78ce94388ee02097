import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalize } from '../../../src/content/canonical-json.js';
import {
  decodeDirectory,
  decodeMasterUrls,
  withMasterUrls,
  decodeDirectoryEntry,
  directoryFromTarget,
  directoryTarget,
  EMPTY_DIRECTORY,
  withEntry,
  withoutEntry,
} from '../../../src/wire/depot-directory.js';

const caught = (f: () => unknown): any => {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
};

describe('depot directory document', () => {
  it('keeps entries sorted by name, raises the version on every change, and round-trips through its target', () => {
    let d = withEntry(EMPTY_DIRECTORY, { name: 'zeta', url: 'https://zeta.example:8443' });
    d = withEntry(d, { name: 'alpha', url: 'https://alpha.example', site: 'paris' });
    d = withEntry(d, { name: 'zeta', url: 'https://zeta2.example' });
    expect(d.version).toBe(3);
    expect(d.depots.map((e) => e.name)).toEqual(['alpha', 'zeta']);
    expect(d.depots[1]!.url).toBe('https://zeta2.example');
    const t = directoryTarget(d);
    expect(
      directoryFromTarget({ length: t.length, hashes: { sha256: t.sha256 }, custom: t.custom }, 'test'),
    ).toEqual(d);
    expect(withoutEntry(d, 'alpha')).toEqual({ format: 1, version: 4, depots: [d.depots[1]] });
  });

  it.each([
    ['http://depot.example', /must use https/],
    ['https://user:pw@depot.example', /user or password/],
    ['https://depot.example/?x=1', /query or fragment/],
    ['https://depot.example/#top', /query or fragment/],
    ['not a url', /not a URL/],
    [`https://${'a'.repeat(600)}.example`, /longer than 512/],
  ])('refuses the URL %s', (url, why) => {
    const e = caught(() => decodeDirectoryEntry({ name: 'd1', url }, 'entry d1'));
    expect(e.code).toBe('bad-input');
    expect(e.message).toMatch(why);
    expect(e.message).toContain('entry d1');
  });

  it('refuses bad names and sites, naming every bad field at once', () => {
    const e = caught(() => decodeDirectoryEntry({ name: '../etc', url: 'https://x', site: 'a b' }, 'entry'));
    expect(e.message).toMatch(/name: does not match/);
    expect(e.message).toMatch(/site: does not match/);
    expect(
      caught(() => decodeDirectoryEntry({ name: 'ok', url: 'https://x', port: 1 }, 'entry')).message,
    ).toMatch(/unknown field "port"/);
  });

  it('a document that is unsorted, duplicated, or disagrees with its signed length and hash is refused', () => {
    expect(
      caught(() =>
        decodeDirectory(
          {
            format: 1,
            version: 1,
            depots: [
              { name: 'b', url: 'https://b' },
              { name: 'a', url: 'https://a' },
            ],
          },
          'doc',
        ),
      ).message,
    ).toMatch(/sorted by name/);
    expect(caught(() => decodeDirectory({ format: 2, version: 1, depots: [] }, 'doc')).message).toMatch(
      /format/,
    );
    const d = withEntry(EMPTY_DIRECTORY, { name: 'a', url: 'https://a' });
    const t = directoryTarget(d);
    const other = directoryTarget(withEntry(d, { name: 'b', url: 'https://b' }));
    const mixed = caught(() =>
      directoryFromTarget(
        { length: t.length, hashes: { sha256: t.sha256 }, custom: other.custom },
        'depots.json',
      ),
    );
    expect(mixed.code).toBe('hash-mismatch');
    const bad = caught(() =>
      directoryFromTarget(
        {
          length: 1,
          hashes: { sha256: t.sha256 },
          custom: { depotDirectory: { format: 1, version: 1, depots: [{ name: 'x', url: 'http://x' }] } },
        },
        'depots.json',
      ),
    );
    expect(bad.code).toBe('bad-metadata');
    expect(
      caught(() => directoryFromTarget({ length: 1, hashes: {}, custom: {} }, 'depots.json')).message,
    ).toMatch(/carries no depotDirectory/);
  });
});

describe('master URLs in the depot directory', () => {
  const masters = ['https://m1.example:8443', 'https://m2.example:8443'];

  it('travel beside the document: its bytes and SHA-256 are those of format, version and depots only', () => {
    let d = withEntry(EMPTY_DIRECTORY, { name: 'd1', url: 'https://d1.example' }, masters);
    expect(d).toMatchObject({ version: 1, masterUrls: masters });
    const t = directoryTarget(d);
    expect(t.custom.masterUrls).toEqual(masters);
    expect(t.custom.depotDirectory).toEqual({ format: 1, version: 1, depots: d.depots });
    // A client that predates the field re-encodes the document it knows: same bytes, same hash.
    const older = { format: 1, version: 1, depots: d.depots };
    expect(createHash('sha256').update(canonicalize(older)).digest('hex')).toBe(t.sha256);
    expect(decodeDirectory(t.custom.depotDirectory, 'older client')).toEqual(older);
    const back = directoryFromTarget(
      { length: t.length, hashes: { sha256: t.sha256 }, custom: t.custom },
      't',
    );
    expect(back).toEqual(d);
    // Later changes keep the list unless given another; withMasterUrls sets it (version + 1).
    d = withoutEntry(d, 'd1');
    expect(d).toMatchObject({ version: 2, masterUrls: masters });
    d = withMasterUrls(d, [masters[1]!]);
    expect(d).toEqual({ format: 1, version: 3, depots: [], masterUrls: [masters[1]] });
    expect(withMasterUrls(d, [])).toEqual({ format: 1, version: 4, depots: [] });
  });

  it('refuses plain http, duplicates and non-lists in the signed list (bad-metadata)', () => {
    const d = withEntry(EMPTY_DIRECTORY, { name: 'd1', url: 'https://d1.example' });
    const t = directoryTarget(d);
    for (const [urls, why] of [
      [['http://m1.example'], /must use https/],
      [[masters[0], `${masters[0]}/`], /listed twice/],
      ['https://m1.example', /expected an array/],
    ] as const) {
      const e = caught(() =>
        directoryFromTarget(
          { length: t.length, hashes: { sha256: t.sha256 }, custom: { ...t.custom, masterUrls: urls } },
          'signed',
        ),
      );
      expect(e.code).toBe('bad-metadata');
      expect(e.message).toMatch(why);
    }
    expect(() =>
      decodeMasterUrls(
        Array(17)
          .fill(0)
          .map((_, i) => `https://m${i}.example`),
        'x',
      ),
    ).toThrow(/at most 16/);
  });
});
