import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAgentConfig, parseDepotFlag } from '../../../agent/config.js';
import { loadDepotConfig, newDepotConfig } from '../../../depot/config.js';
import { decodeAdminSettings } from '../../../master/admin/config.js';
import { isDepotsyncError } from '../../../src/errors.js';
import { firstContact } from '../../../src/net/first-contact.js';
import { requireHttpsUrl } from '../../../src/net/https-url.js';
import { runCli } from '../../helpers/cli.js';

const FP = 'a'.repeat(64);

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

/**
 * Only https anywhere a URL is configured: over plain http the one-time enrollment token and every
 * later request would travel in cleartext. Each flag and each config file refuses http:// by name.
 */
describe('https only', () => {
  let plain: Server;
  let plainUrl: string;
  let requests = 0;
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-https-only-'));
  beforeAll(async () => {
    // A plain http "master": if anything connected, the token would have left in cleartext.
    plain = createServer((_req, res) => {
      requests++;
      res.end('{}');
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
    plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => plain.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('the helper accepts https and names the field when refusing http or garbage', () => {
    expect(requireHttpsUrl('https://hq.example:8443/base', '--master')).toBe('https://hq.example:8443/base');
    const e = caught(() => requireHttpsUrl('http://hq.example', 'depot init: --master'));
    expect(isDepotsyncError(e, 'usage')).toBe(true);
    expect((e as Error).message).toMatch(
      /^depot init: --master: "http:\/\/hq.example" uses plain http:\/\/; only https:\/\/ is accepted/,
    );
    expect((e as Error).message).not.toMatch(/undefined/);
    expect((caught(() => requireHttpsUrl('ftp://x', 'f', 'bad-input')) as Error).message).toMatch(
      /f: expected an https:\/\/ URL/,
    );
    expect(() => requireHttpsUrl('https://user@x', 'f')).toThrow(/expected an https/);
    expect(() => requireHttpsUrl('https://x/?q=1', 'f')).toThrow(/expected an https/);
  });

  it('depot init --master http:// and --parent http:// are refused before any request (exit 2)', () => {
    const a = runCli([
      'depot',
      'init',
      '--dir',
      join(dir, 'd1'),
      '--master',
      plainUrl,
      '--fingerprint',
      FP,
      '--token',
      'secret-token',
    ]);
    expect(a.status).toBe(2);
    expect(a.stderr).toMatch(/depot init: --master: "http:\/\/127\.0\.0\.1:\d+" uses plain http:\/\//);
    const b = runCli([
      'depot',
      'init',
      '--dir',
      join(dir, 'd2'),
      '--master',
      'https://127.0.0.1:1',
      '--parent',
      plainUrl,
      '--fingerprint',
      FP,
    ]);
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/depot init: --parent: .* uses plain http:\/\//);
    expect(requests).toBe(0);
  });

  it('agent init --master http:// and --depot http:// are refused before any request (exit 2)', () => {
    const a = runCli([
      'agent',
      'init',
      '--dir',
      join(dir, 'a1'),
      '--master',
      plainUrl,
      '--fingerprint',
      FP,
      '--token',
      'secret-token',
    ]);
    expect(a.status).toBe(2);
    expect(a.stderr).toMatch(/agent init: --master: .* uses plain http:\/\//);
    const b = runCli([
      'agent',
      'init',
      '--dir',
      join(dir, 'a2'),
      '--master',
      'https://127.0.0.1:1',
      '--fingerprint',
      FP,
      '--depot',
      `d1=${plainUrl}`,
    ]);
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/--depot d1=http:.*: url: .* uses plain http:\/\//);
    expect(() => parseDepotFlag('http://depot.example:9443')).toThrow(/uses plain http/);
    expect(requests).toBe(0);
  });

  it('the first contact refuses http itself (no request leaves)', () => {
    const e = caught(() => firstContact(plainUrl, undefined));
    expect(isDepotsyncError(e, 'bad-input')).toBe(true);
    expect(requests).toBe(0);
  });

  it('config files edited later to an http URL are refused when loaded', () => {
    const good = newDepotConfig({ name: 'd', masterUrl: 'https://hq:8443', fingerprint: FP });
    for (const field of ['masterUrl', 'upstreamUrl'] as const) {
      const path = join(dir, `depot-${field}.json`);
      writeFileSync(path, JSON.stringify({ ...good, [field]: 'http://hq:8443' }));
      const e = caught(() => loadDepotConfig(path));
      expect(isDepotsyncError(e, 'bad-input')).toBe(true);
      expect((e as Error).message).toMatch(
        new RegExp(`depot.json: ${field}: "http://hq:8443" uses plain http://`),
      );
    }
    const agent = {
      format: 1,
      name: 'a',
      masterUrl: 'https://hq:8443',
      fingerprint: FP,
      depots: [],
      fetch: {},
    };
    expect(decodeAgentConfig(agent).masterUrl).toBe('https://hq:8443');
    expect(() => decodeAgentConfig({ ...agent, masterUrl: 'http://hq:8443' })).toThrow(
      /agent.json: masterUrl: "http:\/\/hq:8443" uses plain http/,
    );
    expect(() => decodeAgentConfig({ ...agent, depots: [{ name: 'd', url: 'http://d:9443' }] })).toThrow(
      /agent.json: depots\[0\]: url: .* uses plain http/,
    );
    expect(() => decodeAdminSettings({ webhook: { url: 'http://hooks.example/x' } })).toThrow(
      /webhook.url: "http:\/\/hooks.example\/x" uses plain http/,
    );
    expect(decodeAdminSettings({ webhook: { url: 'https://hooks.example/x' } }).webhook.url).toBe(
      'https://hooks.example/x',
    );
  });
});
