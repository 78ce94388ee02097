import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configuredAgentMasterUrls, decodeAgentConfig } from '../../agent/config.js';
import { agentMasterUrls } from '../../agent/sources.js';
import { DEFAULT_MASTER_CONFIG, loadMasterConfig } from '../../master/config.js';
import { configuredMasterUrls, decodeDepotConfig, newDepotConfig } from '../../depot/config.js';

const M1 = 'https://m1.example:8443';
const M2 = 'https://m2.example:8443';
const FP = 'a'.repeat(64);
const dir = mkdtempSync(join(tmpdir(), 'depotsync-master-urls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const caught = (f: () => unknown): any => {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
};

describe('depot.json: several master URLs', () => {
  it('an existing depot.json with masterUrl alone keeps working: one master, written back the same way', () => {
    const c = decodeDepotConfig({ name: 'd1', masterUrl: M1, fingerprint: FP });
    expect(configuredMasterUrls(c)).toEqual([M1]);
    expect(c.upstreamUrl).toBe(M1);
    expect(JSON.parse(JSON.stringify(c))).not.toHaveProperty('masterUrls');
  });

  it('masterUrls lists them in order, the first being masterUrl; one alone is written as masterUrl', () => {
    const c = decodeDepotConfig({ name: 'd1', masterUrl: M1, masterUrls: [M1, M2], fingerprint: FP });
    expect(configuredMasterUrls(c)).toEqual([M1, M2]);
    // masterUrl may be left out: the first of the list.
    const d = decodeDepotConfig({ name: 'd1', masterUrls: [M2, M1], fingerprint: FP });
    expect(d).toMatchObject({ masterUrl: M2, upstreamUrl: M2, masterUrls: [M2, M1] });
    expect(
      newDepotConfig({ name: 'd1', masterUrl: M1, masterUrls: [M1], fingerprint: FP }),
    ).not.toHaveProperty('masterUrls');
  });

  it.each([
    [
      { masterUrl: M1, masterUrls: [M1, 'http://m2.example'] },
      /masterUrls: "http:\/\/m2.example" uses plain http/,
    ],
    [
      { masterUrl: M1, masterUrls: [M1, `${M1}/`] },
      /masterUrls: "https:\/\/m1.example:8443\/" is given twice/,
    ],
    [{ masterUrl: M1, masterUrls: [M2, M1] }, /masterUrls must start with masterUrl/],
    [{ masterUrl: M1, masterUrls: [] }, /masterUrls: expected at least one https:\/\/ URL/],
    [{ masterUrl: M1, masterUrls: M2 }, /masterUrls: expected at least one https:\/\/ URL/],
  ])('refuses %j by name', (urls, why) => {
    const e = caught(() => decodeDepotConfig({ name: 'd1', fingerprint: FP, ...urls }, 'depot.json'));
    expect(e.code).toBe('bad-input');
    expect(e.message).toMatch(why);
  });
});

describe('agent.json: several master URLs', () => {
  const base = { format: 1, name: 'pc-1', fingerprint: FP, depots: [] };

  it('masterUrl alone (an existing agent) or masterUrls in order; the signed directory adds after them', () => {
    expect(configuredAgentMasterUrls(decodeAgentConfig({ ...base, masterUrl: M1 }))).toEqual([M1]);
    const c = decodeAgentConfig({ ...base, masterUrl: M1, masterUrls: [M1, M2] });
    expect(configuredAgentMasterUrls(c)).toEqual([M1, M2]);
    const m3 = 'https://m3.example';
    expect(agentMasterUrls(c, { format: 1, version: 1, depots: [], masterUrls: [M2, m3, `${M1}/`] })).toEqual(
      [M1, M2, m3],
    );
  });

  it.each([
    [[M1, 'http://m2.example'], /uses plain http/],
    [[M1, M1], /is given twice/],
    [[M2], /masterUrls must start with masterUrl/],
  ])('refuses masterUrls %j by name', (urls, why) => {
    const e = caught(() => decodeAgentConfig({ ...base, masterUrl: M1, masterUrls: urls }, 'agent.json'));
    expect(e.code).toBe('bad-input');
    expect(e.message).toMatch(why);
  });
});

describe('master.json: masterUrls', () => {
  const load = (settings: Record<string, unknown>) => {
    const path = join(dir, 'master.json');
    writeFileSync(path, JSON.stringify({ ...DEFAULT_MASTER_CONFIG, ...settings }));
    return loadMasterConfig(path);
  };

  it('defaults to none; takes https URLs in order, trailing slashes dropped', () => {
    expect(load({}).masterUrls).toEqual([]);
    expect(load({ masterUrls: [`${M1}/`, M2] }).masterUrls).toEqual([M1, M2]);
  });

  it.each([
    [['http://m1.example'], /master\.json: masterUrls\[0\]: "http:\/\/m1.example" must use https/],
    [[M1, `${M1}/`], /listed twice/],
    [M1, /master\.json: masterUrls must be/],
  ])('refuses %j by name', (urls, why) => {
    expect(() => load({ masterUrls: urls })).toThrow(why);
  });
});
