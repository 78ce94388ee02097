import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { removeStaleTempFiles, writeFileAtomic } from '../../../src/fs/atomic-write.js';

describe('atomic writes and what a killed writer leaves', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const newDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'depotsync-atomic-'));
    dirs.push(d);
    return d;
  };

  it('writes the whole file and leaves no temporary file', async () => {
    const d = newDir();
    await writeFileAtomic(join(d, 'status-a-1.json'), 'new');
    expect(readFileSync(join(d, 'status-a-1.json'), 'utf8')).toBe('new');
    expect(readdirSync(d)).toEqual(['status-a-1.json']);
  });

  it('removes the temporary files of dead writers with the prefix, keeps live and other ones', async () => {
    const d = newDir();
    // The pid of a process that has exited: its leftover is stale.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = `.status-a-00000102.json.${dead}-0123456789ab.tmp`;
    const live = `.status-a-00000103.json.${process.pid}-0123456789ab.tmp`;
    const other = `.status-b-00000001.json.${dead}-0123456789ab.tmp`;
    for (const f of [stale, live, other, 'status-a-00000101.json']) writeFileSync(join(d, f), 'x');
    expect(await removeStaleTempFiles(d, 'status-a-')).toEqual([stale]);
    expect(readdirSync(d).sort()).toEqual([live, other, 'status-a-00000101.json'].sort());
  });
});
