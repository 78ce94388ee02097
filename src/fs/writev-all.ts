import type { FileHandle } from 'node:fs/promises';

/**
 * Write `buffers` back to back with writev, at `position` (or at the file's current position when it
 * is undefined), until every byte is written: a writev may write less than asked (signals, very large
 * requests), and the call goes on from the first unwritten byte without copying. Returns the bytes written.
 */
export async function writevAll(
  fh: FileHandle,
  buffers: readonly Uint8Array[],
  position?: number,
): Promise<number> {
  const total = buffers.reduce((n, b) => n + b.length, 0);
  let rest = buffers;
  let done = 0;
  while (done < total) {
    const { bytesWritten } = await fh.writev(
      rest as Uint8Array[],
      position === undefined ? undefined : position + done,
    );
    if (bytesWritten === 0) throw Object.assign(new Error('writev made no progress'), { code: 'EIO' });
    done += bytesWritten;
    rest = after(rest, bytesWritten);
  }
  return total;
}

/** What is left of `buffers` once their first `n` bytes are written. */
function after(buffers: readonly Uint8Array[], n: number): readonly Uint8Array[] {
  let i = 0;
  while (i < buffers.length && n >= (buffers[i] as Uint8Array).length)
    n -= (buffers[i++] as Uint8Array).length;
  if (i === buffers.length) return [];
  return n === 0 ? buffers.slice(i) : [(buffers[i] as Uint8Array).subarray(n), ...buffers.slice(i + 1)];
}
