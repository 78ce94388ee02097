import { formatBytes } from '../format.js';

export { formatBytes };

/**
 * A progress bar on stderr, only when stderr is a terminal (docs/cli.md): scripts and CI see nothing.
 */
export interface Progress {
  update(done: number): void;
  finish(): void;
}

const NO_PROGRESS: Progress = { update() {}, finish() {} };

export function createProgress(
  label: string,
  total: number,
  stream: NodeJS.WriteStream = process.stderr,
): Progress {
  if (!stream.isTTY || total <= 0) return NO_PROGRESS;
  let last = 0;
  const started = Date.now();
  const draw = (done: number): void => {
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - 50));
    const frac = Math.min(1, done / total);
    const filled = Math.round(frac * width);
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = done / secs / 1e6;
    stream.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ` +
        `${formatBytes(done)} ${rate.toFixed(0)} MB/s `,
    );
  };
  return {
    update(done) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw(done);
    },
    finish() {
      draw(total);
      stream.write('\n');
    },
  };
}
