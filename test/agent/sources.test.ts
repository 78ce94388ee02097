import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_FETCH_SETTINGS, decodeAgentConfig, parseDepotFlag } from '../../agent/config.js';
import { compareVersions, latestVersion } from '../../agent/fetch/versions.js';
import { parsePackageRef } from '../../agent/fetch/catalog.js';
import { rankSources } from '../../agent/sources.js';
import { FileAgentState, MemoryAgentState } from '../../agent/state.js';
import { silentLogger } from '../../src/log.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const config = (site?: string) => ({
  masterUrl: 'https://master:8443',
  ...(site ? { site } : {}),
  depots: [
    { name: 'far', url: 'https://far:1', site: 'paris' },
    { name: 'near', url: 'https://near:1', site: 'lyon' },
    { name: 'other', url: 'https://other:1', site: 'lyon' },
  ],
  fetch: { ...DEFAULT_FETCH_SETTINGS, rttTtlMs: 60_000 },
});

describe('rankSources', () => {
  const rtts: Record<string, number | null> = { far: 5, near: 40, other: 20 };
  const probe = async (s: { name: string }) => {
    const v = rtts[s.name];
    if (v === null || v === undefined) throw new Error('unreachable');
    return v;
  };

  it('site first, then round-trip time, the master last', async () => {
    const state = new MemoryAgentState();
    const r = await rankSources({ config: config('lyon'), state, now: () => new Date(1_000_000), probe });
    expect(r.map((s) => s.name)).toEqual(['other', 'near', 'far', 'master']);
    expect(r[0]!.reasons).toEqual(['same site (lyon)', 'round trip 20 ms']);
    expect(r[3]!.reasons[0]).toMatch(/final fallback/);
  });

  it('without a site: by round-trip time; an unreachable depot after reachable ones', async () => {
    const state = new MemoryAgentState();
    rtts.far = null;
    try {
      const r = await rankSources({ config: config(), state, now: () => new Date(1_000_000), probe });
      expect(r.map((s) => s.name)).toEqual(['other', 'near', 'far', 'master']);
      expect(r[2]!.reasons).toContain('unreachable at the last probe');
    } finally {
      rtts.far = 5;
    }
  });

  it('a penalised source goes last until its penalty ends; probes are cached for rttTtlMs', async () => {
    const state = new MemoryAgentState();
    let probes = 0;
    const counting = async (s: { name: string }) => {
      probes++;
      return probe(s);
    };
    const t = 1_000_000;
    state.penalize('https://other:1', t + 5_000, 'chunk x: hash mismatch');
    let r = await rankSources({ config: config('lyon'), state, now: () => new Date(t), probe: counting });
    expect(r.map((s) => s.name)).toEqual(['near', 'far', 'master', 'other']);
    expect(r[3]!.reasons.join(' ')).toMatch(/penalised until .*hash mismatch/);
    expect(probes).toBe(3);
    r = await rankSources({
      config: config('lyon'),
      state,
      now: () => new Date(t + 10_000),
      probe: counting,
    });
    expect(r.map((s) => s.name)).toEqual(['other', 'near', 'far', 'master']);
    expect(probes).toBe(3);
    await rankSources({ config: config('lyon'), state, now: () => new Date(t + 60_000), probe: counting });
    expect(probes).toBe(6);
  });

  it('the file state keeps probes, penalties and the highest generation across opens', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-state-'));
    dirs.push(dir);
    const path = join(dir, 'state.json');
    let s = FileAgentState.open(path, silentLogger());
    s.raise('generation', 7);
    s.raise('generation', 3);
    s.recordProbe('https://a', 12.4, 99);
    s.penalize('https://a', 1234, 'slow');
    s.close();
    s = FileAgentState.open(path, silentLogger());
    expect(s.highest('generation')).toBe(7);
    expect(s.health('https://a')).toMatchObject({
      rttMs: 12,
      probedAtMs: 99,
      penaltyUntilMs: 1234,
      penaltyReason: 'slow',
      failures: 1,
    });
    s.recordSuccess('https://a');
    expect(s.health('https://a')).toMatchObject({ penaltyUntilMs: 0, failures: 0 });
    s.close();
  });
});

describe('versions and names', () => {
  it('compares numerically where digits meet digits', () => {
    expect(compareVersions('1.10', '1.9')).toBeGreaterThan(0);
    expect(compareVersions('2.0', '10.0')).toBeLessThan(0);
    expect(compareVersions('1.0.1', '1.0')).toBeGreaterThan(0);
    expect(compareVersions('1.0.1', '1.0.beta')).toBeGreaterThan(0);
    expect(compareVersions('1.01', '1.1')).not.toBe(0);
    expect(compareVersions('99999999999999999999', '99999999999999999998')).toBeGreaterThan(0);
    expect(latestVersion(['1.9', '1.10', '1.2', '0.99'])).toBe('1.10');
    expect(latestVersion([])).toBeUndefined();
  });

  it('parses NAME and NAME@VERSION, refusing unsafe names', () => {
    expect(parsePackageRef('firefox')).toEqual({ name: 'firefox' });
    expect(parsePackageRef('firefox@128.0.1')).toEqual({ name: 'firefox', version: '128.0.1' });
    expect(() => parsePackageRef('../x')).toThrow(/package name/);
    expect(() => parsePackageRef('x@../1')).toThrow(/version/);
  });

  it('decodes agent.json naming every bad field, and --depot flags', () => {
    expect(() =>
      decodeAgentConfig({ format: 1, name: '..', masterUrl: 'ftp://x', fingerprint: 'zz', depots: [] }),
    ).toThrow(/name.*masterUrl.*fingerprint/);
    expect(() =>
      decodeAgentConfig({
        format: 1,
        name: 'a',
        masterUrl: 'https://m',
        fingerprint: 'a'.repeat(64),
        depots: [],
        fetch: { concurrency: 0 },
      }),
    ).toThrow(/concurrency must be an integer from 1/);
    expect(parseDepotFlag('https://d1.example:8443')).toEqual({
      name: 'd1.example-8443',
      url: 'https://d1.example:8443',
    });
    expect(parseDepotFlag('lyon-1@lyon=https://d1/')).toEqual({
      name: 'lyon-1',
      site: 'lyon',
      url: 'https://d1',
    });
    expect(() => parseDepotFlag('not a url')).toThrow(/--depot/);
  });
});
