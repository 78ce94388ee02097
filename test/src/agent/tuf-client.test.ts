import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tufClientCommand } from '../../../src/agent/tuf-client-command.js';
import { runCommand } from './cli-helpers.js';
import { createRepo, pseudoRandomBytes, type Repo } from './fixture.js';

let repo: Repo;
let server: http.Server;
let base: string;
let dir: string;
const requests: string[] = [];
const overrides = new Map<string, Buffer>();
let manifestBytes: Buffer;

beforeAll(async () => {
  repo = await createRepo();
  manifestBytes = (await repo.publish('tool', '1.0', [{ path: 'tool.bin', data: pseudoRandomBytes(5000, 1) }])).bytes;
  server = http.createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '');
    requests.push(url);
    const m = /^\/(metadata|targets)\/(.+)$/.exec(url);
    const body = m ? (overrides.get(url) ?? (m[1] === 'metadata' ? repo.files.get(m[2]!) : repo.targets.get(m[2]!))) : undefined;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = mkdtempSync(join(tmpdir(), 'tuf-client-'));
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await repo?.close();
  rmSync(dir, { recursive: true, force: true });
});

const run = (meta: string, ...args: string[]) => runCommand(tufClientCommand, ['--metadata-dir', meta, ...args]);
const dl = (meta: string, out: string, name = 'tool@1.0.json') =>
  run(meta, '--metadata-url', `${base}/metadata`, '--target-name', name, '--target-base-url', `${base}/targets`, '--target-dir', out, 'download');

describe('tuf-client (conformance CLIENT-CLI contract)', () => {
  it('init, refresh and download, metadata kept without version prefixes; a second download is cached', async () => {
    const meta = join(dir, 'm1');
    const rootFile = join(dir, 'root.json');
    writeFileSync(rootFile, repo.files.get('1.root.json')!);
    requests.length = 0;
    expect((await run(meta, 'init', rootFile)).result.exitCode ?? 0).toBe(0);
    expect(requests).toHaveLength(0);
    expect((await run(meta, '--metadata-url', `${base}/metadata`, 'refresh')).result.exitCode ?? 0).toBe(0);
    expect(readdirSync(meta).sort()).toEqual(['root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
    const out = join(dir, 'o1');
    expect((await dl(meta, out)).result.exitCode ?? 0).toBe(0);
    expect(readFileSync(join(out, encodeURIComponent('tool@1.0.json'))).equals(manifestBytes)).toBe(true);
    requests.length = 0;
    expect((await dl(meta, out)).result.exitCode ?? 0).toBe(0);
    expect(requests.some((r) => r.startsWith('/targets/'))).toBe(false);
  });

  it('exit 1 for a target whose bytes do not match the signed hash; nothing stored', async () => {
    const meta = join(dir, 'm2');
    const rootFile = join(dir, 'root.json');
    await run(meta, 'init', rootFile);
    const sha = [...repo.targets.keys()].find((k) => k.endsWith('.tool@1.0.json'))!;
    overrides.set(`/targets/${sha}`, Buffer.from(manifestBytes.toString('utf8').replace('"tool"', '"tooo"')));
    try {
      const r = await dl(meta, join(dir, 'o2'));
      expect(r.result.exitCode).toBe(1);
      expect(r.stderr).toMatch(/target tool@1.0.json: sha256 [0-9a-f]{64} does not match the one in the signed targets metadata/);
      expect(existsSync(join(dir, 'o2', encodeURIComponent('tool@1.0.json')))).toBe(false);
    } finally {
      overrides.clear();
    }
  });

  it('exit 1 for a target the metadata does not list, and for a rolled-back timestamp', async () => {
    const meta = join(dir, 'm3');
    await run(meta, 'init', join(dir, 'root.json'));
    expect((await dl(meta, join(dir, 'o3'), 'nope@1.json')).result.exitCode).toBe(1);
    const old = repo.files.get('timestamp.json')!;
    await repo.publish('more', '1', [{ path: 'x', data: Buffer.from('x') }]);
    expect((await run(meta, '--metadata-url', `${base}/metadata`, 'refresh')).result.exitCode ?? 0).toBe(0);
    overrides.set('/metadata/timestamp.json', old);
    try {
      const r = await run(meta, '--metadata-url', `${base}/metadata`, 'refresh');
      expect(r.result.exitCode).toBe(1);
      expect(r.stderr).toMatch(/older than the trusted version/);
    } finally {
      overrides.clear();
    }
  });
});
