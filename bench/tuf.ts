/**
 * TUF metadata: depotsync's repository and client vs the reference TypeScript implementation
 * (@tufjs/models' own sign/serialise path, and the tuf-js client), measured in the same run.
 *
 *   npx tsc -p tsconfig.json && BENCH_BINS=256 BENCH_TARGETS=10000 node dist/bench/tuf.js
 *
 * Rows: publishing one target (re-sign one bin, snapshot, timestamp); a client's first full sync of
 * the catalog (every bin fetched and verified) over HTTP on 127.0.0.1; a delta sync after one change.
 */
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, MetaFile, Snapshot, Targets, Timestamp, TargetFile, Signature } from '@tufjs/models';
import { Updater } from 'tuf-js';
import { DepotsyncError } from '../src/errors.js';
import { MemoryTrustedStore, rootFingerprint, TufClient, type MetadataSource } from '../src/tuf/client.js';
import { generateKeyPair } from '../src/tuf/keys.js';
import { TufRepository, type BinCount, type MetadataFile } from '../src/tuf/repository.js';
import { createHash } from 'node:crypto';

const BINS = Number(process.env.BENCH_BINS ?? 256) as BinCount;
const TARGETS = Number(process.env.BENCH_TARGETS ?? 10_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const target = (i: number) => ({
  path: `pkg${i}/1.0.${i}/manifest.json`,
  target: { length: 1000 + i, sha256: sha(`m${i}`), custom: { name: `pkg${i}`, version: `1.0.${i}` } },
});

async function time<T>(f: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const t = process.hrtime.bigint();
  const value = await f();
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, value };
}

async function best<T>(runs: number, f: (i: number) => Promise<T> | T): Promise<number> {
  let ms = Infinity;
  for (let i = 0; i < runs; i++) ms = Math.min(ms, (await time(() => f(i))).ms);
  return ms;
}

class HttpSource implements MetadataSource {
  constructor(private readonly base: string) {}
  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    const res = await fetch(`${this.base}/${name}`);
    if (res.status === 404) throw new DepotsyncError('not-found', `metadata ${name}: not found`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length > maxBytes) throw new DepotsyncError('too-large', `metadata ${name}: too large`);
    return bytes;
  }
}

async function main(): Promise<void> {
  const keys = {
    root: generateKeyPair(),
    timestamp: generateKeyPair(),
    snapshot: generateKeyPair(),
    targets: generateKeyPair(),
  };
  const files = new Map<string, Uint8Array>();
  const publish = (fs: MetadataFile[]) => fs.forEach((f) => files.set(f.name, f.bytes));
  const created = await time(() =>
    TufRepository.create({
      root: { keys: [keys.root.publicKey], threshold: 1, signers: [keys.root.signer] },
      online: {
        timestamp: keys.timestamp.signer,
        snapshot: keys.snapshot.signer,
        targets: keys.targets.signer,
      },
      options: { binCount: BINS },
    }),
  );
  const repo = created.value.repository;
  publish(created.value.files);
  const root1 = files.get('1.root.json')!;
  const bulk = await time(() =>
    publish(repo.updateTargets(Array.from({ length: TARGETS }, (_, i) => target(i)))),
  );

  // 1. publish one target: depotsync vs the same three documents through @tufjs/models' own path
  let next = TARGETS;
  const oursPublish = await best(RUNS, () =>
    publish(repo.addTarget(target(next).path, target(next++).target)),
  );
  const peerPublish = await best(RUNS, () => {
    const snap = JSON.parse(Buffer.from(files.get(`${repo.generation}.snapshot.json`)!).toString());
    const meta: Record<string, MetaFile> = {};
    for (const [k, v] of Object.entries(snap.signed.meta as Record<string, { version: number }>))
      meta[k] = new MetaFile({ version: v.version });
    const sign = (md: Metadata<any>, k: typeof keys.root) =>
      md.sign((data) => new Signature({ keyID: k.keyid, sig: k.signer.sign(data).toString('hex') }));
    const bin = new Metadata(
      new Targets({
        version: 9,
        specVersion: '1.0.31',
        expires: '2031-01-01T00:00:00Z',
        targets: { a: new TargetFile({ path: 'a', length: 1, hashes: { sha256: sha('a') } }) },
      }),
    );
    sign(bin, keys.targets);
    JSON.stringify(bin.toJSON());
    const s = new Metadata(
      new Snapshot({ version: 9, specVersion: '1.0.31', expires: '2031-01-01T00:00:00Z', meta }),
    );
    sign(s, keys.snapshot);
    const sBytes = JSON.stringify(s.toJSON());
    const ts = new Metadata(
      new Timestamp({
        version: 9,
        specVersion: '1.0.31',
        expires: '2031-01-01T00:00:00Z',
        snapshotMeta: new MetaFile({ version: 9, length: sBytes.length }),
      }),
    );
    sign(ts, keys.timestamp);
    JSON.stringify(ts.toJSON());
  });

  const server = createServer((req, res) => {
    const bytes = files.get((req.url ?? '').replace(/^\/m\//, ''));
    if (bytes) res.writeHead(200, { 'content-type': 'application/json' }).end(bytes);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}/m`;
  const dirs: string[] = [];
  try {
    // 2. full sync: every bin fetched and verified
    const ours = await TufClient.open({
      source: new HttpSource(base),
      store: new MemoryTrustedStore(),
      fingerprint: rootFingerprint(root1),
    });
    const oursFull = await time(() => ours.refresh());
    const oneTargetPerBin = new Map<string, string>();
    for (let i = 0; i < next && oneTargetPerBin.size < BINS; i++)
      oneTargetPerBin.set(repo.binFor(target(i).path), target(i).path);
    const dir = mkdtempSync(join(tmpdir(), 'depotsync-bench-tuf-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'root.json'), root1);
    const updater = () =>
      new Updater({ metadataDir: dir, metadataBaseUrl: base, config: { fetchRetries: 0 } });
    const peerFull = await time(async () => {
      const u = updater();
      await u.refresh();
      for (const path of oneTargetPerBin.values()) await u.getTargetInfo(path);
    });

    // 3. delta: one target added, then both clients catch up
    const t = target(next++);
    publish(repo.addTarget(t.path, t.target));
    const oursDelta = await time(() => ours.refresh());
    const peerDelta = await time(async () => {
      const u = updater();
      await u.refresh();
      return u.getTargetInfo(t.path);
    });
    if (!peerDelta.value || (await ours.getTarget(t.path))?.hashes.sha256 !== peerDelta.value.hashes.sha256)
      throw new Error('clients disagree');

    console.log(
      `\nTUF catalog: ${BINS} bins, ${TARGETS} targets (create ${created.ms.toFixed(0)} ms, bulk publish ${bulk.ms.toFixed(0)} ms)\n`,
    );
    console.log('| operation | depotsync | peer | peer tool | speed-up |');
    console.log('|---|---:|---:|---|---:|');
    const row = (op: string, a: number, b: number, peer: string) =>
      console.log(`| ${op} | ${a.toFixed(1)} ms | ${b.toFixed(1)} ms | ${peer} | ${(b / a).toFixed(1)}x |`);
    row(
      'publish one target (bin + snapshot + timestamp), best of ' + RUNS,
      oursPublish,
      peerPublish,
      '@tufjs/models sign + toJSON',
    );
    row('client full sync (all bins verified, HTTP loopback)', oursFull.ms, peerFull.ms, 'tuf-js 5 Updater');
    row('client delta sync after one change', oursDelta.ms, peerDelta.ms, 'tuf-js 5 Updater');
    console.log(
      `\nFiles fetched in the delta: depotsync ${JSON.stringify(oursDelta.value.fetchedBins.length)} bin(s) + timestamp + snapshot.`,
    );
  } finally {
    server.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

await main();
