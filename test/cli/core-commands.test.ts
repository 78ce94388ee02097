import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blake3Hex } from '../../src/hash/blake3.js';
import { treeRoot } from '../../src/content/hash-tree.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

describe('developer commands', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  const data = pseudoRandomBytes(700_000, 11);
  const file = join(tmp.dir, 'data.bin');
  writeFileSync(file, data);

  it('hash prints HASH  FILE like b3sum', () => {
    const r = runCli(['hash', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${blake3Hex(data)}  ${file}\n`);
  });

  it('hash of a missing file fails with one clear line', () => {
    const r = runCli(['hash', join(tmp.dir, 'nope')]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^depotsync: hash(ing)? .*nope: no such file or directory$/);
  });

  it('chunk --json lists contiguous chunks whose ids and tree root match the bytes', () => {
    const r = runCli(['chunk', file, '--json']);
    expect(r.status).toBe(0);
    const { bytes, root, chunks } = r.json as {
      bytes: number;
      root: string;
      chunks: Array<{ offset: number; length: number; id: string }>;
    };
    expect(bytes).toBe(data.length);
    let offset = 0;
    for (const c of chunks) {
      expect(c.offset).toBe(offset);
      expect(c.id).toBe(blake3Hex(data.subarray(c.offset, c.offset + c.length)));
      offset += c.length;
    }
    expect(offset).toBe(data.length);
    expect(chunks.length).toBeGreaterThan(2);
    expect(root).toBe(treeRoot(chunks.map((c) => Buffer.from(c.id, 'hex'))).toString('hex'));
  });

  it('chunk refuses bad chunking options naming the option', () => {
    const r = runCli(['chunk', file, '--min', '100', '--avg', '50', '--max', '10']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/minBytes|avgBytes|maxBytes/);
  });

  it('version reports the native BLAKE3 implementation', () => {
    const r = runCli(['version', '--json']);
    expect(r.status).toBe(0);
    expect(r.json.blake3).toBe('native');
    expect(r.json.blake3OneShot).toBe(true);
    expect(runCli(['version']).stdout).toMatch(/blake3: native \+ one-call chunk hash/);
  });
});
