import { availableParallelism } from 'node:os';
import { MessageChannel, parentPort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { Chunker } from '../chunk/fastcdc.js';
import { blake3 } from '../hash/blake3.js';
import { compressChunk } from './compress-chunk.js';
import type { ChunkWorkerReply, ChunkWorkerRequest } from './chunk-worker.js';
import type { CompressReply, CompressRequest } from './compress-worker-thread.js';

/**
 * The ingest worker thread (started by chunk-worker.ts): cuts the blocks of each stream with its own
 * `Chunker` and hashes every chunk right after cutting it, while its bytes are still in the CPU cache.
 * Blocks arrive transferred and go back transferred, with the chunks as spans of them (or of the
 * chunker's own copies for chunks that straddle two blocks, transferred too). Replies come in the
 * order of the requests.
 */
const port = parentPort;
if (!port) throw new Error('chunk-worker-thread.ts runs as a worker thread only (see chunk-worker.ts)');

const streams = new Map<number, { chunker: Chunker; level: number }>();

/**
 * Replies with less than this many bytes of chunks are compressed here alone: handing a share to the
 * helper costs a copy and a round trip.
 */
const HELPER_MIN_BYTES = 256 * 1024;
/** A helper that has not answered by then is taken as gone (the chunk worker blocks while it waits). */
const HELPER_TIMEOUT_MS = 120_000;

interface Helper {
  worker: Worker;
  port: MessagePort;
  done: Int32Array;
}
let helper: Helper | null | undefined;

/**
 * The compression helper (compress-worker-thread.ts), started on first use where there is a core to
 * spare; null on a single core. zstd is the slowest step of ingest on compressible content, several
 * times chunking and hashing, so a second core compressing half of it shortens publish the most.
 */
function compressHelper(): Helper | null {
  if (helper !== undefined) return helper;
  if (availableParallelism() < 2) return (helper = null);
  const flag = new SharedArrayBuffer(4);
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(new URL('./compress-worker-thread.js', import.meta.url), {
    workerData: { port: port2, flag },
    transferList: [port2],
  });
  // Never what keeps this thread alive; it dies with it.
  worker.unref();
  port1.unref();
  return (helper = { worker, port: port1, done: new Int32Array(flag) });
}

/**
 * The frames of `pieces` (null where compression does not pay): the first ones, up to about half the
 * bytes, on the helper thread, the rest here at the same time.
 */
function compressAll(pieces: readonly Uint8Array[], level: number): Array<Buffer | null> {
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const h = total >= HELPER_MIN_BYTES ? compressHelper() : null;
  if (!h) return pieces.map((p) => compressChunk(p, level));
  let split = 0;
  for (let given = 0; split < pieces.length - 1 && given + pieces[split]!.length <= total / 2; split++)
    given += pieces[split]!.length;
  if (split === 0) return pieces.map((p) => compressChunk(p, level));
  const lengths = pieces.slice(0, split).map((p) => p.length);
  const data = new Uint8Array(lengths.reduce((n, l) => n + l, 0));
  for (let i = 0, at = 0; i < split; at += lengths[i]!, i++) data.set(pieces[i]!, at);
  Atomics.store(h.done, 0, 0);
  const req: CompressRequest = { level, data: data.buffer, lengths };
  h.port.postMessage(req, [data.buffer]);
  const mine = pieces.slice(split).map((p) => compressChunk(p, level));
  if (Atomics.wait(h.done, 0, 0, HELPER_TIMEOUT_MS) === 'timed-out')
    throw new Error(`the compression helper did not answer in ${HELPER_TIMEOUT_MS / 1000} s`);
  const got = receiveMessageOnPort(h.port)?.message as CompressReply | undefined;
  if (!got) throw new Error('the compression helper raised its flag without an answer');
  if (got.error !== undefined) throw new Error(`compression helper: ${got.error}`);
  const theirs: Array<Buffer | null> = [];
  for (let i = 0; i < split; i++) {
    const at = got.spans[2 * i]!;
    theirs.push(at < 0 ? null : Buffer.from(got.frames, at, got.spans[2 * i + 1]));
  }
  return [...theirs, ...mine];
}

function reply(seq: number, pieces: readonly Uint8Array[], given: ArrayBuffer[], level: number): void {
  const buffers = [...given];
  const index = new Map<ArrayBufferLike, number>(buffers.map((b, i) => [b, i]));
  const spans: number[] = [];
  const ids: string[] = [];
  for (const p of pieces) {
    let b = index.get(p.buffer);
    if (b === undefined) {
      b = buffers.push(p.buffer as ArrayBuffer) - 1;
      index.set(p.buffer, b);
    }
    spans.push(b, p.byteOffset, p.byteLength);
    ids.push(blake3(p).toString('hex'));
  }
  // Compressed right after hashing, here and on the helper (publish compresses once, here); the frames
  // of a reply travel in one transferred buffer.
  const frames = level !== 0 ? compressAll(pieces, level) : [];
  const framed = frames.reduce((n, f) => n + (f ? f.length : 0), 0);
  let frameBuffer: ArrayBuffer | undefined;
  const frameSpans: number[] = [];
  if (framed > 0) {
    const all = new Uint8Array(framed);
    let at = 0;
    for (const f of frames) {
      if (!f) {
        frameSpans.push(-1);
        continue;
      }
      all.set(f, at);
      frameSpans.push(at, f.length);
      at += f.length;
    }
    frameBuffer = all.buffer;
  }
  const out: ChunkWorkerReply = {
    seq,
    buffers,
    spans,
    ids,
    compressed: level !== 0,
    ...(frameBuffer ? { frameBuffer, frameSpans } : {}),
  };
  port!.postMessage(out, frameBuffer ? [...buffers, frameBuffer] : buffers);
}

port.on('message', (m: ChunkWorkerRequest) => {
  try {
    switch (m.op) {
      case 'open':
        streams.set(m.stream, { chunker: new Chunker(m.options, { ownsInput: true }), level: m.level });
        return;
      case 'close':
        streams.delete(m.stream);
        return;
      case 'push': {
        const st = streams.get(m.stream);
        if (!st) throw new Error(`no open stream ${m.stream}`);
        // Chunks inside the block are views of it; the chunker copies what it keeps for the next push.
        reply(m.seq, st.chunker.push(new Uint8Array(m.block, m.offset, m.length)), [m.block], st.level);
        return;
      }
      case 'finish': {
        const st = streams.get(m.stream);
        if (!st) throw new Error(`no open stream ${m.stream}`);
        streams.delete(m.stream);
        reply(m.seq, st.chunker.finish(), [], st.level);
        return;
      }
    }
  } catch (e) {
    const out: ChunkWorkerReply = {
      seq: 'seq' in m ? m.seq : 0,
      error: e instanceof Error ? (e.stack ?? e.message) : String(e),
    };
    port.postMessage(out);
  }
});
