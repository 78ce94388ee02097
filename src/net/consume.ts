import type { Readable } from 'node:stream';

/**
 * Feed a response body to `onPiece` piece by piece as it arrives ('data' events), pausing the stream
 * while a promise `onPiece` returned is pending. Unlike `for await`, which makes `read()` concatenate
 * everything buffered into one new buffer, no byte is copied here: at 1 GiB that copy (and its garbage)
 * was a fifth of the agent's CPU time. Pieces are TLS records (about 11 KiB), so the common case stays
 * synchronous: pausing and resuming the stream for each one cost
 * more than the records' handling.
 */
export function consume(
  body: Readable,
  onPiece: (piece: Buffer) => Promise<void> | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let failed = false;
    let busy: Promise<void> = Promise.resolve();
    const fail = (e: unknown) => {
      if (failed) return;
      failed = true;
      body.destroy();
      // Settle only once the piece in hand is done: no write of this batch runs on after it failed.
      void busy.then(
        () => reject(e),
        () => reject(e),
      );
    };
    body.on('data', (piece: Buffer) => {
      if (failed) return;
      let work: Promise<void> | undefined;
      try {
        work = onPiece(piece);
      } catch (e) {
        fail(e);
        return;
      }
      if (!work) return;
      body.pause();
      busy = work.then(() => {
        if (!failed) body.resume();
      }, fail);
    });
    body.once('error', fail);
    body.once('end', () => {
      void busy.then(() => {
        if (!failed) resolve();
      });
    });
  });
}
