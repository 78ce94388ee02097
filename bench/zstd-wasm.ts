/**
 * The agent's zstd decoders: the native addon (zstd-napi) against the WebAssembly build
 * (@bokuweb/zstd-wasm, src/compress/zstd-wasm.ts), decoding what the publisher writes: 64 KiB chunks
 * compressed one by one, and a delta of a changed file against its old version (`--patch-from` frames).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/zstd-wasm.js
 * Needs @bokuweb/zstd-wasm installed. BENCH_MIB (default 64): the plain size of each input.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadZstdDecoder, type ZstdDecoder } from '../src/compress/zstd-decoder.js';
import { compress, delta } from '../src/compress/zstd.js';

const MiB = 1024 * 1024;
const BYTES = Number(process.env.BENCH_MIB ?? 64) * MiB;
const CHUNK = 64 * 1024;

/** Package-like bytes: this project's compiled JavaScript, repeated with a varying prefix to BYTES. */
function packageBytes(): Buffer {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const parts: Buffer[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.js')) parts.push(readFileSync(p));
    }
  };
  walk(join(root, 'src'));
  const one = Buffer.concat(parts);
  const out: Buffer[] = [];
  for (let n = 0, i = 0; n < BYTES; i++) {
    const piece = Buffer.concat([Buffer.from(`/* copy ${i} */\n`), one]);
    out.push(piece);
    n += piece.length;
  }
  return Buffer.concat(out).subarray(0, BYTES);
}

function time(f: () => void): number {
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    f();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

async function main(): Promise<void> {
  const plain = packageBytes();
  const chunks: Array<{ frame: Buffer; length: number }> = [];
  for (let i = 0; i < plain.length; i += CHUNK) {
    const c = plain.subarray(i, i + CHUNK);
    chunks.push({ frame: compress(c), length: c.length });
  }
  const stored = chunks.reduce((n, c) => n + c.frame.length, 0);
  // The new version: every 1,000th line changed, a block inserted in the middle.
  const base = plain.subarray(0, 32 * MiB);
  const lines = base.toString('latin1').split('\n');
  for (let i = 0; i < lines.length; i += 1000) lines[i] = `// changed ${i}`;
  lines.splice(lines.length >> 1, 0, 'x'.repeat(100_000));
  const target = Buffer.from(lines.join('\n'), 'latin1');
  const d = delta(base, target);

  const decoders: ZstdDecoder[] = [await loadZstdDecoder(), await loadZstdDecoder({ preferWasm: true })];
  console.log(
    `\n${(plain.length / MiB).toFixed(0)} MiB of JavaScript as ${chunks.length} chunks of 64 KiB (zstd level 3: ${(stored / MiB).toFixed(1)} MiB); a delta of a 32 MiB file: ${(d.length / 1024).toFixed(0)} KiB\n`,
  );
  console.log('| decoder | chunks: MB/s of plain output | delta: MB/s of plain output |');
  console.log('|---|---:|---:|');
  for (const dec of decoders) {
    const chunkMs = time(() => {
      for (const c of chunks) dec.decompress(c.frame, { maxBytes: c.length, exact: true });
    });
    const deltaMs = time(() => {
      if (!dec.applyDelta(base, d, { maxBytes: target.length }).equals(target))
        throw new Error('delta differs');
    });
    console.log(
      `| ${dec.implementation} | ${(plain.length / 1e3 / chunkMs).toFixed(0)} | ${(target.length / 1e3 / deltaMs).toFixed(0)} |`,
    );
  }
  console.log(`\nLoad average during the run: ${(loadavg()[0] ?? 0).toFixed(2)} on ${cpus().length} cores.`);
}

await main();
