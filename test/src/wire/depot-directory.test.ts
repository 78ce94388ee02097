import { describe, expect, it } from 'vitest';
import {
  decodeDirectory,
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
