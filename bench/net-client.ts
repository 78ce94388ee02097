/**
 * Mutual-TLS download throughput: depotsync's HttpClient (response highWaterMark 16 KiB vs 1 MiB)
 * against curl, both fetching the same bytes from the same HTTPS server (tlsServerOptions, separate
 * process) with a machine certificate.
 *
 *   npx tsc -p tsconfig.json && BENCH_BYTES=268435456 node dist/bench/net-client.js
 */
import { spawn, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpClient } from '../src/net/client.js';
import { tlsServerOptions } from '../src/net/tls.js';
import { createCa, issueMachineCertificate, issueServerCertificate, loadCa } from '../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../src/pki/csr.js';

const BYTES = Number(process.env.BENCH_BYTES ?? 64 * 1024 * 1024);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

async function serverMain(): Promise<void> {
  const dir = process.env.BENCH_NET_DIR as string;
  const f = (n: string) => readFileSync(join(dir, n), 'utf8');
  const slice = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < slice.length; i += 1) slice[i] = (i * 2654435761) >>> 24;
  const server = https.createServer(
    tlsServerOptions({ keyPem: f('server.key'), certPem: f('server.pem'), caPem: f('ca.pem') }),
    (_req, res) => {
      res.setHeader('content-length', String(BYTES));
      let left = BYTES;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, slice.length);
          left -= n;
          if (!res.write(n === slice.length ? slice : slice.subarray(0, n)))
            return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    },
  );
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

async function timeIt(fn: () => Promise<number>): Promise<{ seconds: number; bytes: number }> {
  const t0 = process.hrtime.bigint();
  const bytes = await fn();
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, bytes };
}

function curl(dir: string, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', [
      '-sS',
      '--cacert',
      join(dir, 'ca.pem'),
      '--cert',
      join(dir, 'agent.pem'),
      '--key',
      join(dir, 'agent.key'),
      '-o',
      '/dev/null',
      '-w',
      '%{size_download}',
      url,
    ]);
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`curl exited ${code}`))));
  });
}

async function main(): Promise<void> {
  if (process.env.BENCH_NET_ROLE === 'server') return serverMain();
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-bench-net-'));
  try {
    const m = createCa({ commonName: 'bench CA' });
    const ca = loadCa(m.keyPem, m.certPem);
    const srv = issueServerCertificate(ca, {
      commonName: 'bench',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const a = createMachineKeyAndCsr({ machineName: 'bench-agent', role: 'agent' });
    const agentCert = issueMachineCertificate(ca, a.csrPem, { machineName: 'bench-agent', role: 'agent' });
    writeFileSync(join(dir, 'ca.pem'), m.certPem);
    writeFileSync(join(dir, 'server.pem'), srv.certPem);
    writeFileSync(join(dir, 'server.key'), srv.keyPem);
    writeFileSync(join(dir, 'agent.pem'), agentCert);
    writeFileSync(join(dir, 'agent.key'), a.keyPem);
    const child = fork(process.argv[1] as string, [], {
      env: { ...process.env, BENCH_NET_ROLE: 'server', BENCH_NET_DIR: dir },
    });
    const port = await new Promise<number>((r) =>
      child.once('message', (msg) => r((msg as { port: number }).port)),
    );
    const base = `https://127.0.0.1:${port}`;
    const cases: Array<{ tool: string; run: () => Promise<number> }> = [];
    for (const hwm of [16 * 1024, 1024 * 1024]) {
      const client = new HttpClient({
        baseUrl: base,
        caPem: m.certPem,
        certPem: agentCert,
        keyPem: a.keyPem,
        highWaterMarkBytes: hwm,
      });
      cases.push({
        tool: `depotsync HttpClient, highWaterMark ${hwm >= 1024 * 1024 ? `${hwm / 1024 / 1024} MiB` : `${hwm / 1024} KiB`}`,
        run: async () => {
          const res = await client.getStream('/blob', { maxBytes: BYTES });
          let n = 0;
          for await (const chunk of res.body) n += (chunk as Buffer).length;
          return n;
        },
      });
    }
    cases.push({ tool: 'curl (OpenSSL), same mTLS credentials', run: () => curl(dir, `${base}/blob`) });
    const rows: string[] = [];
    for (const c of cases) {
      const times: number[] = [];
      for (let i = 0; i < RUNS; i += 1) {
        const r = await timeIt(c.run);
        if (r.bytes !== BYTES) throw new Error(`${c.tool}: got ${r.bytes} of ${BYTES} bytes`);
        times.push(r.seconds);
      }
      times.sort((x, y) => x - y);
      const median = times[Math.floor(times.length / 2)] as number;
      rows.push(`| ${c.tool} | ${(BYTES / 1024 / 1024 / median).toFixed(0)} | ${median.toFixed(3)} |`);
    }
    console.log(
      `\nmutual-TLS download of ${(BYTES / 1024 / 1024).toFixed(0)} MiB over loopback, median of ${RUNS} runs (node ${process.version})\n`,
    );
    console.log('| client | MiB/s | seconds |');
    console.log('|---|---:|---:|');
    for (const r of rows) console.log(r);
    child.disconnect();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
