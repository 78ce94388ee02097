import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import { dirname, join } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import { enrollDepot, freePort, runJson, startService, waitForHttps, type Service } from './processes.js';

export interface DemoStep {
  step: string;
  detail: string;
  ms: number;
}

export interface DemoResult {
  dir: string;
  fingerprint: string;
  steps: DemoStep[];
  ok: boolean;
}

/**
 * `depotsync demo`: a master, two depots (depot-b tiered below depot-a) and an agent, each a separate
 * process on 127.0.0.1, end to end: publish → sync → tiered sync → verified fetch, then a new version with
 * scattered 4 KiB edits (100 by default), which the running depots fetch by themselves within seconds
 * (distribute now), to show that only changed chunks move.
 */
export async function runDemo(opts: {
  bytes: number;
  edits?: number;
  keep: boolean;
  log: (line: string) => void;
  dir?: string;
}): Promise<DemoResult> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'depotsync-demo-'));
  const steps: DemoStep[] = [];
  const services: Service[] = [];
  const step = async <T>(name: string, fn: () => Promise<T> | T, detail: (r: T) => string): Promise<T> => {
    const t0 = Date.now();
    const r = await fn();
    const s = { step: name, detail: detail(r), ms: Date.now() - t0 };
    steps.push(s);
    opts.log(`${name.padEnd(34)} ${String(s.ms).padStart(6)} ms  ${s.detail}`);
    return r;
  };
  const M = join(dir, 'master');
  const DA = join(dir, 'depot-a');
  const DB = join(dir, 'depot-b');
  const A = join(dir, 'agent');
  try {
    const init = await step(
      'master init',
      () => runJson(['master', 'init', '--dir', M]),
      (r) => `root fingerprint ${r.fingerprint.slice(0, 16)}…`,
    );
    const fp = init.fingerprint as string;

    const installer = join(dir, 'setup-1.0.bin');
    const data = demoBytes(opts.bytes);
    writeFileSync(installer, data);
    await step(
      'master publish setup@1.0',
      () => runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', installer]),
      (r) => `${r.bytes} bytes, ${r.chunks} chunks, generation ${r.generation}`,
    );

    const [mp, ap, bp] = [await freePort(), await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    await step(
      'master serve',
      async () => {
        services.push(
          startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`], {
            log: opts.log,
          }),
        );
        await waitForHttps(masterUrl);
      },
      () => masterUrl,
    );

    const depotUrl = (p: number) => `https://127.0.0.1:${p}`;
    for (const [name, D, port, parent] of [
      ['depot-a', DA, ap, undefined],
      ['depot-b', DB, bp, depotUrl(ap)],
    ] as const) {
      await step(
        `${name} init (token)`,
        () => enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name, port, parent }),
        (r) => `${r.state}${parent ? `, parent ${parent}` : ''}`,
      );
      await step(
        `${name} sync`,
        () => runJson(['depot', 'sync', '--dir', D]),
        (r) => `generation ${r.generation}: ${r.chunksFetched} chunks, ${r.bytesFetched} bytes`,
      );
      await step(
        `${name} serve`,
        async () => {
          services.push(startService(name, ['depot', 'serve', '--dir', D], { log: opts.log }));
          await waitForHttps(depotUrl(port));
        },
        () => depotUrl(port),
      );
    }

    const agentToken = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
    await step(
      'agent init (token)',
      () =>
        runJson([
          'agent',
          'init',
          '--dir',
          A,
          '--master',
          masterUrl,
          '--fingerprint',
          fp,
          '--token',
          agentToken,
          '--depot',
          depotUrl(bp),
          '--depot',
          depotUrl(ap),
        ]),
      (r) => r.state,
    );
    const out1 = join(dir, 'out', 'setup-1.0.bin');
    runJsonMkdir(out1);
    await step(
      'agent fetch setup@1.0',
      () => runJson(['agent', 'fetch', '--dir', A, 'setup@1.0', '--out', out1]),
      (r) => `${r.bytes} bytes from ${r.source.join(', ')}`,
    );
    await step(
      'verify setup@1.0 bytes',
      () => sameBytes(out1, data),
      () => 'identical to what was published',
    );

    const edits = opts.edits ?? 100;
    const edited = scatterEdits(data, edits, 4096);
    const installer2 = join(dir, 'setup-1.1.bin');
    writeFileSync(installer2, edited);
    const published = await step(
      'master publish setup@1.1',
      () => runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.1', installer2]),
      (r) => `${edits} scattered 4 KiB edits: ${r.newChunks} new chunks, ${r.newBytes} new bytes`,
    );
    // Distribute now: the running depots hear of the new generation and sync by themselves.
    const g2 = published.generation as number;
    await step(
      'depot-a delta sync',
      () => distributed(depotUrl(ap), DA, g2),
      (r) => `generation ${r.generation}: ${r.chunksFetched} chunks, ${r.bytesFetched} bytes`,
    );
    await step(
      'depot-b delta sync (from depot-a)',
      () => distributed(depotUrl(bp), DB, g2),
      (r) => `generation ${r.generation}: ${r.chunksFetched} chunks, ${r.bytesFetched} bytes`,
    );
    const out2 = join(dir, 'out', 'setup-1.1.bin');
    await step(
      'agent fetch setup (latest)',
      () => runJson(['agent', 'fetch', '--dir', A, 'setup', '--out', out2]),
      (r) => `${r.name}@${r.version}: ${r.bytes} bytes from ${r.source.join(', ')}`,
    );
    await step(
      'verify setup@1.1 bytes',
      () => sameBytes(out2, edited),
      () => 'identical to what was published',
    );
    return { dir, fingerprint: fp, steps, ok: true };
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** The agent refuses an output whose parent folder is missing (by design); the demo makes it. */
function runJsonMkdir(file: string): void {
  mkdirSync(dirname(file), { recursive: true });
}

function sameBytes(path: string, expected: Buffer): void {
  const got = createHash('sha256').update(readFileSync(path)).digest('hex');
  const want = createHash('sha256').update(expected).digest('hex');
  if (got !== want)
    throw new DepotsyncError('hash-mismatch', `demo: ${path} differs from what was published`);
}

/** Deterministic pseudo-random bytes (incompressible, like an installer). */
export function demoBytes(n: number, seed = 0x5eed): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x | 0, i);
  }
  return out;
}

/** `count` edits of `size` bytes spread evenly over the data. */
export function scatterEdits(data: Buffer, count: number, size: number): Buffer {
  const out = Buffer.from(data);
  const stride = Math.floor(data.length / (count + 1));
  for (let k = 1; k <= count; k++) {
    const at = k * stride;
    for (let i = 0; i < size && at + i < out.length; i++) out[at + i] = (out[at + i]! ^ 0xa5) & 0xff;
  }
  return out;
}

/** The generation a server's public /healthz reports (undefined while it does not answer). */
function healthGeneration(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/healthz`, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve((JSON.parse(Buffer.concat(parts).toString('utf8')) as { generation?: number }).generation);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
  });
}

/**
 * Wait until a running depot serves `generation` by itself (its event stream to the upstream starts the
 * sync: "distribute now"), then report the run that switched to it (`depot status`).
 */
async function distributed(
  url: string,
  dir: string,
  generation: number,
  timeoutMs = 120_000,
): Promise<{ generation: number; chunksFetched: number; bytesFetched: number }> {
  const deadline = Date.now() + timeoutMs;
  while ((await healthGeneration(url)) !== generation) {
    if (Date.now() > deadline)
      throw new DepotsyncError(
        'timeout',
        `demo: ${url} did not serve generation ${generation} within ${timeoutMs / 1000} s`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
  const runs = (
    runJson(['depot', 'status', '--dir', dir]) as {
      runs: Array<{ generation: number | null; chunksFetched: number; bytesFetched: number }>;
    }
  ).runs;
  const run = [...runs].reverse().find((r) => r.generation === generation);
  return { generation, chunksFetched: run?.chunksFetched ?? 0, bytesFetched: run?.bytesFetched ?? 0 };
}
