import { describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { bypassesProxy, proxyOption, resolveProxy } from '../../../src/net/proxy.js';

describe('proxy settings', () => {
  it('the setting wins over HTTPS_PROXY; "" takes the environment; "direct" none', () => {
    const env = { HTTPS_PROXY: 'http://env-proxy:3128', NO_PROXY: 'internal.example, 10.0.0.1' };
    expect(resolveProxy('depot.json', { proxy: 'http://set:8080', noProxy: '' }, env)?.url.host).toBe(
      'set:8080',
    );
    expect(resolveProxy('depot.json', { proxy: '', noProxy: '' }, env)?.url.host).toBe('env-proxy:3128');
    expect(resolveProxy('depot.json', { proxy: 'direct', noProxy: '' }, env)).toBeUndefined();
    expect(resolveProxy('depot.json', { proxy: '', noProxy: '' }, {})).toBeUndefined();
    // Lower case first, as curl does; a bare HOST:PORT is read as http.
    expect(
      resolveProxy('x', { proxy: '', noProxy: '' }, { https_proxy: 'low:1', HTTPS_PROXY: 'up:2' })?.url.href,
    ).toBe('http://low:1/');
    expect(resolveProxy('x', { proxy: '', noProxy: 'a.example' }, env)?.noProxy).toEqual([
      'a.example',
      'internal.example',
      '10.0.0.1',
    ]);
  });

  it('NO_PROXY: domains with their subdomains, addresses, ports, *', () => {
    const list = ['.corp.example', 'depot.example', '10.0.0.1', 'master.example:8443'];
    expect(bypassesProxy('a.corp.example', 443, list)).toBe(true);
    expect(bypassesProxy('corp.example', 443, list)).toBe(true);
    expect(bypassesProxy('x.depot.example', 443, list)).toBe(true);
    expect(bypassesProxy('notdepot.example', 443, list)).toBe(false);
    expect(bypassesProxy('10.0.0.1', 443, list)).toBe(true);
    expect(bypassesProxy('10.0.0.10', 443, list)).toBe(false);
    expect(bypassesProxy('master.example', 8443, list)).toBe(true);
    expect(bypassesProxy('master.example', 443, list)).toBe(false);
    expect(bypassesProxy('[::1]', 443, ['::1'])).toBe(true);
    expect(bypassesProxy('anything', 1, ['*'])).toBe(true);
  });

  it('refuses what is not an http proxy URL, by name', () => {
    for (const [value, message] of [
      ['https://p:3128', /only http:\/\/ proxies are supported/],
      ['socks5://p:1080', /only http:\/\/ proxies are supported/],
      ['http://p:3128/path', /a proxy URL has no path or query/],
      ['http://', /not a proxy URL/],
    ] as const) {
      let err: unknown;
      try {
        proxyOption('depot.json', value);
      } catch (e) {
        err = e;
      }
      expect(isDepotsyncError(err, 'bad-input'), value).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
    expect(() => proxyOption('depot.json', 3128)).toThrow(/proxy must be a string/);
    expect(() => resolveProxy('x', { proxy: '', noProxy: '' }, { HTTPS_PROXY: 'https://p:1' })).toThrow(
      /HTTPS_PROXY: only http:\/\//,
    );
  });
});
