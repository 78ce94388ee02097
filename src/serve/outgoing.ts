/** Waiting on a response written straight to its socket (the batch and delta routes). */
type Outgoing = NodeJS.WritableStream & { off(e: string, f: () => void): unknown };

/** Waits for the socket to drain, or for the caller to hang up: never forever. */
export function drainOrClose(outgoing: Outgoing): Promise<void> {
  let onDrain = () => {};
  const drained = new Promise<void>((resolve) => (onDrain = resolve));
  outgoing.once('drain', onDrain);
  return untilOrClose(outgoing, drained).finally(() => outgoing.off('drain', onDrain));
}

/** Waits for `done` (a write flushed), or for the caller to hang up: never forever. */
export function untilOrClose(outgoing: Outgoing, done: Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const finish = () => {
      outgoing.off('close', finish);
      resolve();
    };
    outgoing.on('close', finish);
    void done.then(finish);
  });
}
