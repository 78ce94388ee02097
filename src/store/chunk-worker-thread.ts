import { parentPort } from 'node:worker_threads';
import { Chunker } from '../chunk/fastcdc.js';
import { blake3 } from '../hash/blake3.js';
import { compressChunk } from './compress-chunk.js';
import type { ChunkWorkerReply, ChunkWorkerRequest } from './chunk-worker.js';

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
  // Compressed right after hashing, on this thread (publish compresses once, here); the frames of a
  // reply travel in one transferred buffer.
  const frames = level !== 0 ? pieces.map((p) => compressChunk(p, level)) : [];
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
