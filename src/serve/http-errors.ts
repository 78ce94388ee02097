import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { DepotsyncError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';

/** How each error code answers over HTTP. 4xx tell the caller what was wrong; 5xx are generic. */
const STATUS: Partial<Record<ErrorCode, ContentfulStatusCode>> = {
  'bad-input': 400,
  'bad-json': 400,
  'bad-path': 400,
  usage: 400,
  'bad-certificate': 400,
  'bad-signature': 400,
  'bad-metadata': 400,
  'hash-mismatch': 400,
  unauthorized: 401,
  forbidden: 403,
  expired: 403,
  'not-found': 404,
  conflict: 409,
  'already-exists': 409,
  'too-large': 413,
  'rate-limited': 429,
};

export function statusFor(code: ErrorCode): ContentfulStatusCode {
  return STATUS[code] ?? 500;
}

/** Build the app's onError handler: typed errors become `{error:{code,message}}`, the rest a generic 500. */
export function errorHandler(log: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof HTTPException) {
      return c.json({ error: { code: 'http', message: err.message || 'request refused' } }, err.status);
    }
    if (err instanceof DepotsyncError) {
      const status = statusFor(err.code);
      if (status >= 500) {
        log.error({ err, path: c.req.path }, 'request failed');
        return c.json({ error: { code: 'internal', message: 'internal error; see the server log' } }, status);
      }
      return c.json({ error: { code: err.code, message: err.message, hint: err.hint } }, status);
    }
    log.error({ err, path: c.req.path }, 'request failed');
    return c.json({ error: { code: 'internal', message: 'internal error; see the server log' } }, 500);
  };
}

/**
 * Read a request body with a byte cap counted while streaming (never trusting Content-Length). On the
 * Node server the body is read straight from the socket's IncomingMessage: building the web
 * ReadableStream of `c.req.raw.body` costs more than a small request's whole handling (status reports,
 * batch requests). Elsewhere (tests' `app.request`) the web stream is read.
 */
export async function readBodyCapped(c: Context, maxBytes: number, what: string): Promise<Buffer> {
  const declared = Number(c.req.header('content-length') ?? '0');
  if (declared > maxBytes) {
    throw new DepotsyncError('too-large', `${what}: ${declared} bytes exceeds the limit of ${maxBytes}`);
  }
  const tooLarge = () =>
    new DepotsyncError('too-large', `${what}: body exceeds the limit of ${maxBytes} bytes`);
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming && typeof incoming.on === 'function' && !incoming.readableDidRead && !incoming.readableEnded)
    return readIncoming(incoming, maxBytes, tooLarge);
  const body = c.req.raw.body;
  if (!body) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let total = 0;
  const reader = (body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    parts.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }
  return Buffer.concat(parts, total);
}

function readIncoming(incoming: IncomingMessage, maxBytes: number, tooLarge: () => Error): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = 0;
    const cleanup = () => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
    };
    const onData = (piece: Buffer) => {
      total += piece.length;
      if (total > maxBytes) {
        cleanup();
        // Stop reading; the response (413) is still sent, and the connection closed after it.
        incoming.pause();
        reject(tooLarge());
        return;
      }
      parts.push(piece);
    };
    const onEnd = () => {
      cleanup();
      resolve(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, total));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onClose = () => {
      if (incoming.readableEnded) return;
      cleanup();
      reject(
        new DepotsyncError(
          'network',
          'request body: the client closed the connection before the body was complete',
        ),
      );
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}
