import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Context } from 'hono';
import { validateRelativePath } from '../../../src/content/paths.js';
import { DepotsyncError, fromSystemError } from '../../../src/errors.js';
import type { ServeEnv } from '../../../src/serve/env.js';

/** Where uploads are spooled before publish: inside the master directory, never under the drop folder. */
export function uploadsDir(masterDir: string): string {
  return join(masterDir, 'uploads');
}

export interface Upload {
  /** The spooled file, named as it will appear in the package. */
  path: string;
  bytes: number;
  /** Remove the spool folder (always call it, success or not). */
  cleanup(): Promise<void>;
}

/**
 * Stream the request body to `uploads/<random>/<filename>` with the byte cap counted while it streams
 * (Content-Length is checked first but never trusted): blocks filling the master's disk through an
 * endless upload. Memory stays bounded whatever the size.
 */
export async function spoolUpload(
  c: Context<ServeEnv>,
  opts: { masterDir: string; filename: string; maxBytes: number; highWaterMarkBytes?: number },
): Promise<Upload> {
  const filename = validateRelativePath(opts.filename, 'upload filename');
  if (filename.includes('/'))
    throw new DepotsyncError(
      'bad-path',
      `upload filename ${JSON.stringify(filename)}: must be a plain file name without folders`,
    );
  const declared = Number(c.req.header('content-length') ?? '0');
  if (declared > opts.maxBytes) {
    throw new DepotsyncError(
      'too-large',
      `upload of ${declared} bytes exceeds the limit of ${opts.maxBytes} (maxUploadBytes)`,
    );
  }
  const body = c.req.raw.body;
  if (!body)
    throw new DepotsyncError('bad-input', 'upload: the request has no body', {
      hint: 'send the file as the raw request body',
    });

  const dir = join(uploadsDir(opts.masterDir), randomBytes(12).toString('hex'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const path = join(dir, filename);
  let bytes = 0;
  const counter = new Transform({
    highWaterMark: opts.highWaterMarkBytes ?? 1024 * 1024,
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > opts.maxBytes) {
        done(
          new DepotsyncError(
            'too-large',
            `upload exceeds the limit of ${opts.maxBytes} bytes (maxUploadBytes)`,
          ),
        );
        return;
      }
      done(null, chunk);
    },
  });
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await pipeline(
      Readable.fromWeb(body as unknown as WebReadableStream<Uint8Array>, {
        highWaterMark: opts.highWaterMarkBytes ?? 1024 * 1024,
      }),
      counter,
      createWriteStream(path, {
        flags: 'wx',
        mode: 0o600,
        highWaterMark: opts.highWaterMarkBytes ?? 1024 * 1024,
      }),
    );
  } catch (e) {
    await cleanup();
    throw e instanceof DepotsyncError ? e : fromSystemError(e, `upload ${filename}`);
  }
  return { path, bytes, cleanup };
}
