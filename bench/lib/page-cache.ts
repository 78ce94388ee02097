import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Write `bytes` into a scratch file in `dir` and delete it, so that the page cache the timed runs
 * write into is memory the machine has used before. On this project's virtual machines, memory the
 * guest touches for the first time is slow to hand out (the host maps it page by page): 1 GiB written
 * through the page cache costs 1.7 s and 1.1 s of CPU the first time, 0.8 s and 0.2 s of CPU after
 * (measured with a page-cache write + fdatasync of 1 GiB, four runs in a row). Without this, whichever
 * tool a benchmark times first pays for it and the one timed next reuses the pages for free; a
 * long-running server's memory is all warm.
 */
export function warmPageCache(dir: string, bytes: number): void {
  const path = join(dir, 'page-cache-warm-up.tmp');
  const block = Buffer.alloc(4 * 1024 * 1024, 0x5a);
  const fd = openSync(path, 'w');
  try {
    for (let left = bytes; left > 0; left -= block.length)
      writeSync(fd, block, 0, Math.min(left, block.length));
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}
