import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tufClientCommand } from '../../agent/tuf-client-command.js';
import { runCommand } from './cli-helpers.js';
import { createRepo, pseudoRandomBytes, type Repo } from './fixture.js';
import { makeKey, SpecRepo } from '../src/tuf/spec-repo.js';

let repo: Repo;
let server: http.Server;
let base: string;
let dir: string;
const requests: string[] = [];
const overrides = new Map<string, Buffer>();
let manifestBytes: Buffer;

beforeAll(async () => {
  repo = await createRepo();
  manifestBytes = (
    await repo.publish('tool', '1.0', [{ path: 'tool.bin', data: pseudoRandomBytes(5000, 1) }])
  ).bytes;
  server = http.createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '');
    requests.push(url);
    const m = /^\/(metadata|targets)\/(.+)$/.exec(url);
    const body = m
      ? (overrides.get(url) ?? (m[1] === 'metadata' ? repo.files.get(m[2]!) : repo.targets.get(m[2]!)))
      : undefined;
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

const run = (meta: string, ...args: string[]) =>
  runCommand(tufClientCommand, ['--metadata-dir', meta, ...args]);
const dl = (meta: string, out: string, name = 'tool@1.0.json') =>
  run(
    meta,
    '--metadata-url',
    `${base}/metadata`,
    '--target-name',
    name,
    '--target-base-url',
    `${base}/targets`,
    '--target-dir',
    out,
    'download',
  );

describe('tuf-client (conformance CLIENT-CLI contract)', () => {
  it('init, refresh and download, metadata kept without version prefixes; a second download is cached', async () => {
    const meta = join(dir, 'm1');
    const rootFile = join(dir, 'root.json');
    writeFileSync(rootFile, repo.files.get('1.root.json')!);
    requests.length = 0;
    expect((await run(meta, 'init', rootFile)).result.exitCode ?? 0).toBe(0);
    expect(requests).toHaveLength(0);
    expect((await run(meta, '--metadata-url', `${base}/metadata`, 'refresh')).result.exitCode ?? 0).toBe(0);
    expect(readdirSync(meta).sort()).toEqual([
      'root.json',
      'snapshot.json',
      'targets.json',
      'timestamp.json',
    ]);
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
      expect(r.stderr).toMatch(
        /target tool@1.0.json: sha256 [0-9a-f]{64} does not match the one in the signed targets metadata/,
      );
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

describe('tuf-client on plain TUF repositories (ECDSA/RSA keys, delegations, sha512, consistent_snapshot)', () => {
  /** Serve a SpecRepo's metadata and target files over HTTP; the raw request paths are recorded. */
  async function serve(spec: SpecRepo, files: Map<string, Buffer>) {
    const asked: string[] = [];
    const srv = http.createServer((req, res) => {
      const url = req.url ?? '';
      asked.push(url);
      const name = url.replace(/^\/metadata\//, '');
      const send = (body: Uint8Array | undefined) =>
        body ? res.writeHead(200, { 'content-length': body.length }).end(body) : res.writeHead(404).end();
      if (url.startsWith('/metadata/')) spec.mirror.fetch(name, 1e7).then(send, () => send(undefined));
      else send(files.get(decodeURIComponent(url.replace(/^\/targets\//, ''))));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return {
      asked,
      url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
      close: () => srv.close(),
    };
  }

  it.each([true, false])(
    'consistent_snapshot %s: a sha512-only target in a delegated role "?"',
    async (consistent) => {
      const spec = new SpecRepo('ecdsa', consistent);
      spec.delegate('targets', { name: '?', keys: [makeKey('rsa')], paths: ['dir/*'] });
      const content = Buffer.from('sha512 only');
      spec.addTarget('?', 'dir/f.txt', content, ['sha512']);
      spec.publish();
      const sha512 = createHash('sha512').update(content).digest('hex');
      const s = await serve(spec, new Map([[consistent ? `dir/${sha512}.f.txt` : 'dir/f.txt', content]]));
      try {
        const meta = join(dir, `plain-${consistent}`);
        const rootFile = join(dir, `plain-root-${consistent}.json`);
        writeFileSync(rootFile, spec.root1);
        expect((await run(meta, 'init', rootFile)).result.exitCode ?? 0).toBe(0);
        const out = join(dir, `plain-out-${consistent}`);
        const args = ['--metadata-url', `${s.url}/metadata`, '--target-name', 'dir/f.txt'];
        const r = await run(
          meta,
          ...args,
          '--target-base-url',
          `${s.url}/targets`,
          '--target-dir',
          out,
          'download',
        );
        expect(r.result.exitCode ?? 0, r.stderr).toBe(0);
        expect(readFileSync(join(out, encodeURIComponent('dir/f.txt'))).equals(content)).toBe(true);
        const v = consistent ? '1.' : '';
        expect(s.asked).toEqual([
          '/metadata/2.root.json',
          '/metadata/timestamp.json',
          `/metadata/${v}snapshot.json`,
          `/metadata/${v}targets.json`,
          `/metadata/${v}%3F.json`,
          consistent ? `/targets/dir/${sha512}.f.txt` : '/targets/dir/f.txt',
        ]);
        expect(readdirSync(meta).sort()).toEqual([
          '%3F.json',
          'root.json',
          'snapshot.json',
          'targets.json',
          'timestamp.json',
        ]);
      } finally {
        s.close();
      }
    },
  );
});
