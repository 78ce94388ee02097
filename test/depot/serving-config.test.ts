import { describe, expect, it } from 'vitest';
import { decodeDepotConfig, DEFAULT_SERVING, newDepotConfig } from '../../depot/config.js';

const base = { name: 'branch-1', masterUrl: 'https://master.example:8443', fingerprint: 'a'.repeat(64) };

/** How much memory `depot serve` gives serving: `serving.hotChunkBytes`, `serving.batchMemoryBytes` in depot.json. */
describe('serving memory in depot.json', () => {
  it('defaults (an older depot.json without the section), accepts settings, and names what it refuses', () => {
    expect(decodeDepotConfig(base).serving).toEqual(DEFAULT_SERVING);
    expect(DEFAULT_SERVING).toEqual({
      hotChunkBytes: 64 * 1024 * 1024,
      batchMemoryBytes: 64 * 1024 * 1024,
      verifyOnServe: true,
      verifiedTtlMs: 0,
    });
    expect(decodeDepotConfig({ ...base, serving: { hotChunkBytes: 0 } }).serving).toEqual({
      ...DEFAULT_SERVING,
      hotChunkBytes: 0,
    });
    expect(
      decodeDepotConfig({ ...base, serving: { verifyOnServe: false, verifiedTtlMs: 5000 } }).serving,
    ).toMatchObject({ verifyOnServe: false, verifiedTtlMs: 5000 });
    expect(() => decodeDepotConfig({ ...base, serving: { verifyOnServe: 'yes' } })).toThrow(
      /verifyOnServe must be/,
    );
    expect(() => decodeDepotConfig({ ...base, serving: { verifiedTtlMs: -1 } })).toThrow(
      /serving\.verifiedTtlMs must be an integer from 0/,
    );
    expect(
      newDepotConfig({ ...base, serving: { batchMemoryBytes: 256 * 1024 * 1024 } }).serving.batchMemoryBytes,
    ).toBe(256 * 1024 * 1024);
    expect(() => decodeDepotConfig({ ...base, serving: { hotChunkBytes: -1 } })).toThrow(
      /serving\.hotChunkBytes must be an integer from 0/,
    );
    expect(() => decodeDepotConfig({ ...base, serving: { batchMemoryBytes: 1024 } })).toThrow(
      /serving\.batchMemoryBytes must be an integer from 4194304/,
    );
    expect(() => decodeDepotConfig({ ...base, serving: { hotChunkBytes: '64M' } })).toThrow(
      /serving: hotChunkBytes must be a number, got "64M"/,
    );
    expect(() => decodeDepotConfig({ ...base, serving: { hot: 1 } })).toThrow(
      /serving: unknown setting "hot"/,
    );
  });
});
