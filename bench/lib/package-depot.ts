/**
 * Shared benchmark set-up (used by bench/agent-load.ts; bench/agent-fetch.ts and bench/depot-sync.ts
 * hold older copies of the same steps): one package in a depot's chunk store with a signed catalog,
 * the TLS material of a CA, a depot and an agent, the depot's read API in its own process, and nginx
 * with client certificates serving the same bytes.
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildManifest, encodeManifest, manifestId, type Manifest } from '../../src/content/manifest.js';
import { createCa, issueMachineCertificate, issueServerCertificate, loadCa } from '../../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../../src/pki/csr.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { ingestFile } from '../../src/store/ingest.js';
import { rootFingerprint } from '../../src/tuf/client.js';
import { generateKeyPair } from '../../src/tuf/keys.js';
import { TufRepository } from '../../src/tuf/repository.js';

export const MiB = 1024 * 1024;
export const CHUNKING = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 };

/** Incompressible, repeatable bytes (xorshift32) written in 4 MiB blocks. */
export function randomFile(path: string, size: number, seed = 0x9e3779b9): void {
  const fd = openSync(path, 'w');
  const block = Buffer.allocUnsafe(4 * MiB);
  let x = seed >>> 0 || 1;
  for (let done = 0; done < size;) {
    for (let i = 0; i < block.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      block.writeUInt32LE(x >>> 0, i);
    }
    const n = Math.min(block.length, size - done);
    writeSync(fd, block, 0, n);
    done += n;
  }
  closeSync(fd);
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export interface PreparedPackage {
  /** The original file (nginx serves it from `root/www`). */
  file: string;
  manifest: Manifest;
  fingerprint: string;
  tls: { caPem: string; agentCertPem: string; agentKeyPem: string };
}

/**
 * Under `root`: `www/setup.bin` (BYTES of random data), `store/` (its chunks), `metadata/` and `targets/`
 * (a signed catalog listing it as big@1), and ca.pem, depot.pem/.key (server certificate for
 * 127.0.0.1), agent.pem/.key (an agent machine certificate).
 */
export async function preparePackage(root: string, bytes: number): Promise<PreparedPackage> {
  const file = join(root, 'www', 'setup.bin');
  mkdirSync(join(root, 'www'), { recursive: true });
  randomFile(file, bytes);
  const store = ChunkStore.open(join(root, 'store'));
  const ing = await ingestFile(store, file, { chunker: CHUNKING });
  await store.close();
  const keys = {
    root: generateKeyPair(),
    timestamp: generateKeyPair(),
    snapshot: generateKeyPair(),
    targets: generateKeyPair(),
  };
  const { repository, files } = TufRepository.create({
    root: { keys: [keys.root.publicKey], threshold: 1, signers: [keys.root.signer] },
    online: {
      timestamp: keys.timestamp.signer,
      snapshot: keys.snapshot.signer,
      targets: keys.targets.signer,
    },
    options: { binCount: 256 },
  });
  const manifest = buildManifest({
    name: 'big',
    version: '1',
    chunking: CHUNKING,
    files: [{ path: 'setup.bin', mode: 0o755, size: ing.size, chunks: ing.chunks }],
  });
  const mbytes = encodeManifest(manifest);
  const sha = createHash('sha256').update(mbytes).digest('hex');
  const all = [
    ...files,
    ...repository.addTarget('big@1.json', {
      length: mbytes.length,
      sha256: sha,
      custom: { manifestId: manifestId(mbytes), name: 'big', version: '1' },
    }),
  ];
  mkdirSync(join(root, 'metadata'), { recursive: true });
  mkdirSync(join(root, 'targets'), { recursive: true });
  for (const f of all) writeFileSync(join(root, 'metadata', f.name), f.bytes);
  writeFileSync(join(root, 'targets', `${sha}.big@1.json`), mbytes);

  const m = createCa({ commonName: 'bench CA' });
  const ca = loadCa(m.keyPem, m.certPem);
  const srv = issueServerCertificate(ca, { commonName: 'depot', ipAddresses: ['127.0.0.1'] });
  const a = createMachineKeyAndCsr({ machineName: 'bench-agent', role: 'agent' });
  const agentPem = issueMachineCertificate(ca, a.csrPem, { machineName: 'bench-agent', role: 'agent' });
  for (const [n, v] of Object.entries({
    'ca.pem': m.certPem,
    'depot.pem': srv.certPem,
    'depot.key': srv.keyPem,
    'agent.pem': agentPem,
    'agent.key': a.keyPem,
  }))
    writeFileSync(join(root, n), v);
  return {
    file,
    manifest,
    fingerprint: rootFingerprint(readFileSync(join(root, 'metadata', '1.root.json'))),
    tls: { caPem: m.certPem, agentCertPem: agentPem, agentKeyPem: a.keyPem },
  };
}

/** The depot read API (bench/lib/depot-server.ts) in its own process; `profileDir` adds --cpu-prof. */
export async function forkDepot(
  root: string,
  opts: { profileDir?: string | undefined } = {},
): Promise<{ child: ChildProcess; url: string }> {
  const script = fileURLToPath(new URL('./depot-server.js', import.meta.url));
  const execArgv = opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : [];
  const child = fork(script, [], { env: { ...process.env, BENCH_ROOT: root }, execArgv });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (msg) => resolve((msg as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`depot process exited with ${code}`)));
  });
  return { child, url: `https://127.0.0.1:${port}` };
}

/**
 * nginx (ssl_verify_client on, TLS 1.2/1.3) serving `root/www` with the depot's server certificate.
 * Workers run as an unprivileged user: `root` is opened to them (mkdtemp makes it 0700).
 */
export async function startNginx(
  root: string,
  opts: { workers?: number | 'auto' } = {},
): Promise<{ proc: ChildProcess; url: string }> {
  const port = await freePort();
  writeFileSync(
    join(root, 'nginx.conf'),
    `worker_processes ${opts.workers ?? 1}; daemon off; pid ${root}/nginx.pid; error_log ${root}/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; keepalive_requests 100000; client_body_temp_path ${root}/ngx-body; proxy_temp_path ${root}/ngx-proxy; fastcgi_temp_path ${root}/ngx-fcgi; uwsgi_temp_path ${root}/ngx-uwsgi; scgi_temp_path ${root}/ngx-scgi;
  server { listen 127.0.0.1:${port} ssl; ssl_certificate ${root}/depot.pem; ssl_certificate_key ${root}/depot.key;
    ssl_client_certificate ${root}/ca.pem; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3; root ${root}/www; } }
`,
  );
  chmodSync(root, 0o755);
  const proc = spawn('nginx', ['-c', join(root, 'nginx.conf'), '-p', root], { stdio: 'ignore' });
  const url = `https://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const r = spawnSync('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '--fail',
      '--cacert',
      join(root, 'ca.pem'),
      '--cert',
      join(root, 'agent.pem'),
      '--key',
      join(root, 'agent.key'),
      `${url}/setup.bin`,
    ]);
    if (r.status === 0) return { proc, url };
    await new Promise((res) => setTimeout(res, 50));
  }
  proc.kill();
  throw new Error(`nginx did not start (see ${root}/nginx-error.log)`);
}

/** Peak resident set of a process and its children (Linux /proc VmHWM), in MiB; undefined elsewhere. */
export function peakRssMiB(pid: number): number | undefined {
  const hwm = (p: number): number => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : 0;
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return undefined;
  }
  return hwm(pid) + children.reduce((s, c) => s + hwm(c), 0);
}
