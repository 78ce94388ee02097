import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MASTER_CONFIG, loadMasterConfig } from '../../master/config.js';
import { DEFAULT_READ_API_OPTIONS } from '../../src/serve/read-api.js';

const dir = mkdtempSync(join(tmpdir(), 'depotsync-master-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(settings: Record<string, unknown>) {
  const path = join(dir, 'master.json');
  writeFileSync(path, JSON.stringify({ ...DEFAULT_MASTER_CONFIG, ...settings }));
  return () => loadMasterConfig(path);
}

describe('master.json: the read API memory settings', () => {
  it('default to the read API defaults, and a file without them gets those', () => {
    expect(DEFAULT_MASTER_CONFIG.hotChunkBytes).toBe(DEFAULT_READ_API_OPTIONS.hotChunkBytes);
    expect(DEFAULT_MASTER_CONFIG.batchMemoryBytes).toBe(DEFAULT_READ_API_OPTIONS.batchMemoryBytes);
    const path = join(dir, 'older.json');
    const { hotChunkBytes: _h, batchMemoryBytes: _b, ...older } = DEFAULT_MASTER_CONFIG;
    writeFileSync(path, JSON.stringify(older));
    expect(loadMasterConfig(path)).toMatchObject({
      hotChunkBytes: 64 * 1024 * 1024,
      batchMemoryBytes: 64 * 1024 * 1024,
    });
    expect(JSON.parse(readFileSync(path, 'utf8'))).not.toHaveProperty('hotChunkBytes');
  });

  it('take 0 to turn the hot-chunk memory off and refuse out-of-range values by name', () => {
    expect(load({ hotChunkBytes: 0 })().hotChunkBytes).toBe(0);
    expect(load({ hotChunkBytes: -1 })).toThrow(/master\.json: hotChunkBytes must be an integer from 0/);
    expect(load({ batchMemoryBytes: 1024 })).toThrow(
      /master\.json: batchMemoryBytes must be an integer from 4194304/,
    );
    expect(load({ batchMemoryBytes: '64M' })).toThrow(/batchMemoryBytes/);
  });
});

describe('master.json: chunkCompressLevel', () => {
  it("takes 0 (plain), zstd's fast levels down to -7 and levels up to 19, and refuses the rest by name", () => {
    expect(load({ chunkCompressLevel: 0 })().chunkCompressLevel).toBe(0);
    expect(load({ chunkCompressLevel: -7 })().chunkCompressLevel).toBe(-7);
    expect(load({ chunkCompressLevel: 19 })().chunkCompressLevel).toBe(19);
    expect(load({ chunkCompressLevel: -8 })).toThrow(
      /master\.json: chunkCompressLevel must be an integer from -7/,
    );
    expect(load({ chunkCompressLevel: 20 })).toThrow(/chunkCompressLevel/);
    expect(load({ chunkCompressLevel: 'fast' })).toThrow(/chunkCompressLevel/);
  });
});

describe('master.json: operator administration settings', () => {
  it('default to 90-day tokens, a 14-day warning and no TOTP policy; refuse bad values by name', () => {
    expect(load({})()).toMatchObject({
      operatorTokenDays: 90,
      operatorTokenWarningDays: 14,
      requireTotp: false,
    });
    expect(load({ requireTotp: true })().requireTotp).toBe(true);
    expect(load({ operatorTokenDays: 0 })).toThrow(
      /master\.json: operatorTokenDays must be an integer from 1/,
    );
    expect(load({ operatorTokenDays: 10, operatorTokenWarningDays: 10 })).toThrow(
      /operatorTokenWarningDays must be an integer from 0 to 9/,
    );
    expect(load({ requireTotp: 'yes' })).toThrow(/requireTotp must be a boolean/);
  });
});

describe('master.json: several masters', () => {
  it('defaults to one master (shared folder M, 6 s lease) and refuses bad values by name', () => {
    expect(load({})()).toMatchObject({ sharedDir: null, signerLeaseTtlMs: 6000 });
    expect(load({ sharedDir: '/srv/shared', signerLeaseTtlMs: 3000 })()).toMatchObject({
      sharedDir: '/srv/shared',
      signerLeaseTtlMs: 3000,
    });
    expect(load({ sharedDir: '' })).toThrow(/sharedDir must be a folder path or null/);
    expect(load({ sharedDir: 5 })).toThrow(/sharedDir/);
    expect(load({ signerLeaseTtlMs: 10 })).toThrow(/signerLeaseTtlMs/);
    expect(load({ signerLeaseTtlMs: 1.5e9 })).toThrow(/signerLeaseTtlMs/);
    expect(load({ database: { url: 'postgres://u@h:5432/d', passwordFile: 7 } })).toThrow(/passwordFile/);
    expect(load({ database: { url: 'postgres://u@h:5432/d', other: 1 } })).toThrow(/other/);
  });
});
