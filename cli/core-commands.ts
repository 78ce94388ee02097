import { stat } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import type { Command } from '../src/command/command.js';

/** Developer tools that need no role directory: `hash`, `chunk`, `version`. */
export const coreCommands: Command[] = [
  {
    path: ['hash'],
    usage: 'hash FILE...',
    summary: 'print the BLAKE3 hash of each file, like b3sum: HASH  FILE',
    positionals: [1, 1000],
    async run(ctx) {
      const { hashFile } = await import('../src/hash/blake3.js');
      const rows: Array<{ file: string; blake3: string }> = [];
      for (const file of ctx.positionals) {
        try {
          rows.push({ file, blake3: await hashFile(file) });
        } catch (e) {
          throw fromSystemError(e, `hash ${file}`);
        }
      }
      return {
        json: rows.length === 1 ? rows[0] : { files: rows },
        human: rows.map((r) => `${r.blake3}  ${r.file}`).join('\n'),
      };
    },
  },
  {
    path: ['chunk'],
    usage: 'chunk FILE [--min BYTES --avg BYTES --max BYTES]',
    summary: 'cut a file into content-defined chunks (FastCDC) and print them with the hash-tree root',
    positionals: [1, 1],
    options: { min: { type: 'string' }, avg: { type: 'string' }, max: { type: 'string' } },
    async run(ctx) {
      const { chunkFile, DEFAULT_CHUNKER_OPTIONS } = await import('../src/chunk/fastcdc.js');
      const { blake3 } = await import('../src/hash/blake3.js');
      const { treeRoot } = await import('../src/content/hash-tree.js');
      const file = ctx.positionals[0] as string;
      try {
        await stat(file);
      } catch (e) {
        throw fromSystemError(e, `chunk ${file}`);
      }
      const num = (name: string, dflt: number): number => {
        const v = ctx.values[name];
        return typeof v === 'string' ? Number(v) : dflt;
      };
      const opts = {
        minBytes: num('min', DEFAULT_CHUNKER_OPTIONS.minBytes),
        avgBytes: num('avg', DEFAULT_CHUNKER_OPTIONS.avgBytes),
        maxBytes: num('max', DEFAULT_CHUNKER_OPTIONS.maxBytes),
      };
      const chunks: Array<{ offset: number; length: number; id: string }> = [];
      const ids: Buffer[] = [];
      let bytes = 0;
      for await (const c of chunkFile(file, opts)) {
        const digest = blake3(c.data);
        ids.push(digest);
        chunks.push({ offset: c.offset, length: c.length, id: digest.toString('hex') });
        bytes += c.length;
      }
      const root = treeRoot(ids).toString('hex');
      return {
        json: { bytes, root, chunks },
        human: [
          ...chunks.map((c) => `${c.id}  ${String(c.offset).padStart(12)}  ${String(c.length).padStart(7)}`),
          `${chunks.length} chunks, ${bytes} bytes, tree root ${root}`,
        ].join('\n'),
      };
    },
  },
  {
    path: ['demo'],
    usage: 'demo [--bytes N] [--edits N] [--keep]',
    summary: 'run a master, two depots (one tiered below the other) and an agent on 127.0.0.1, end to end',
    options: { bytes: { type: 'string' }, edits: { type: 'string' }, keep: { type: 'boolean' } },
    logLevel: 'warn',
    async run(ctx) {
      const { runDemo } = await import('./demo/demo.js');
      const bytes = typeof ctx.values.bytes === 'string' ? Number(ctx.values.bytes) : 64 * 1024 * 1024;
      if (!Number.isSafeInteger(bytes) || bytes < 1024 || bytes > 64 * 1024 ** 3) {
        throw new DepotsyncError(
          'usage',
          `demo: --bytes must be an integer from 1024 to 68719476736, got ${JSON.stringify(ctx.values.bytes)}`,
        );
      }
      const edits = typeof ctx.values.edits === 'string' ? Number(ctx.values.edits) : 100;
      if (!Number.isSafeInteger(edits) || edits < 1 || edits > 100_000) {
        throw new DepotsyncError(
          'usage',
          `demo: --edits must be an integer from 1 to 100000, got ${JSON.stringify(ctx.values.edits)}`,
        );
      }
      const lines: string[] = [];
      const r = await runDemo({
        bytes,
        edits,
        keep: ctx.values.keep === true,
        log: (line) => {
          if (line.startsWith('[')) {
            if (!line.includes('listening on')) ctx.stderr.write(`${line}\n`);
          } else if (!ctx.json) ctx.stdout.write(`${line}\n`);
          lines.push(line);
        },
      });
      return {
        json: r,
        human: `\ndemo complete: every byte the agent wrote was verified against the master's signatures${ctx.values.keep ? `\nfiles kept in ${r.dir}` : ''}`,
      };
    },
  },
  {
    path: ['version'],
    usage: 'version',
    summary: 'print the depotsync version and which BLAKE3 implementation loaded',
    async run() {
      const { createRequire } = await import('node:module');
      const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
      const { blake3Implementation } = await import('../src/hash/blake3.js');
      const { backend } = await import('../src/hash/backend.js');
      const impl = blake3Implementation();
      // The one-call hash for chunk-sized inputs (backend.ts): absent means slower chunk hashing, not wrong.
      const oneShot = backend.oneShot !== undefined;
      return {
        json: { version: pkg.version, blake3: impl, blake3OneShot: oneShot, node: process.version },
        human: `depotsync ${pkg.version} (blake3: ${impl}${oneShot ? ' + one-call chunk hash' : ''}, node ${process.version})`,
      };
    },
  },
];
