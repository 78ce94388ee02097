import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDepot, type Depot } from '../../../depot/depot.js';
import { windowFile } from '../../../depot/offline/window.js';
import { createDepotApp } from '../../../depot/serve/app.js';
import { startDepotServer, type DepotServer } from '../../../depot/serve/server.js';
import { fetchPackage, type FetchPackageResult } from '../../../agent/fetch/fetch.js';
import { RemoteSource, type Source } from '../../../agent/fetch/remote.js';
import { FileAgentState } from '../../../agent/state.js';
import { DepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { HttpClient } from '../../../src/net/client.js';
import { issueMachineCertificate } from '../../../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { DirectoryTrustedStore } from '../../../src/tuf/client.js';
import { bytesSeeded, edited, startWorld, type World } from './fixture.js';

const DAY = 86_400_000;
const log = silentLogger();
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Agents of an air-gapped depot accept its generation while the master-signed validity
 * window is open, and only from that depot, only for that generation. Real master keys, real bundles,
 * the real depot app over HTTPS on 127.0.0.1, a real agent fetch with an injected clock.
 */
describe('agents honour the validity window of their air-gapped depot', () => {
  let w: World;
  let D: string;
  let depot: Depot;
  let server: DepotServer;
  let tls: { caPem: string; certPem: string; keyPem: string };
  let validUntil: string;
  let agents = 0;
  const v1 = bytesSeeded(300_000, 11);

  beforeAll(async () => {
    w = await startWorld();
    await w.publish('setup', '1.0', v1);
    D = await w.newDepot('ship');
    const x = await w.exportFor('ship', { validMs: 3 * DAY });
    validUntil = x.validUntil;
    await w.importInto(D, x.file);
    depot = openDepot(D, { logger: log });
    const app = createDepotApp({
      db: depot.db,
      store: depot.store,
      revocations: depot.revocations,
      logger: log,
      name: 'ship',
      metricsToken: false,
    });
    server = await startDepotServer({
      app,
      keyPem: depot.creds.keyPem,
      certPem: depot.creds.certPem,
      caPem: depot.creds.caPem,
      host: '127.0.0.1',
      port: 0,
      logger: log,
    });
    const k = createMachineKeyAndCsr({ machineName: 'pc-1', role: 'agent' });
    tls = {
      caPem: w.master.ca.certPem,
      certPem: issueMachineCertificate(w.master.ca, k.csrPem, { machineName: 'pc-1', role: 'agent' }),
      keyPem: k.keyPem,
    };
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await depot?.close();
    await w?.close();
  });

  /** A fresh agent (its own trusted store and state) fetching setup@VERSION from the ship at `now`. */
  async function fetchAt(
    now: Date,
    version = '1.0',
  ): Promise<{ result?: FetchPackageResult; error?: DepotsyncError; tufDir: string }> {
    const A = w.file(`agent-${++agents}`);
    mkdirSync(A, { recursive: true });
    const state = FileAgentState.open(join(A, 'state.json'), log);
    const source: Source = { name: 'ship', url: `https://127.0.0.1:${server.port}`, kind: 'depot' };
    const tufDir = join(A, 'tuf');
    try {
      const result = await fetchPackage({
        name: 'setup',
        version,
        out: join(A, 'setup.bin'),
        sources: [source],
        connect: (s) => new RemoteSource(s, new HttpClient({ baseUrl: s.url, ...tls })),
        store: new DirectoryTrustedStore(tufDir),
        fingerprint: w.fingerprint,
        state,
        now: () => now,
      });
      return { result, tufDir };
    } catch (e) {
      if (!(e instanceof DepotsyncError)) throw e;
      return { error: e, tufDir };
    } finally {
      state.close();
    }
  }

  const later = (ms: number) => new Date(Date.now() + ms);

  it('accepts the expired timestamp while the window is open, and refuses it once the window closed', async () => {
    // Control: the timestamp (1 day) has expired two days on; without the window this is a freeze.
    const ok = await fetchAt(later(2 * DAY));
    expect(ok.error?.message).toBeUndefined();
    expect(ok.result!.generation).toBe(2);
    expect(sha(readFileSync(ok.result!.path))).toBe(sha(v1));

    const closed = await fetchAt(later(4 * DAY));
    expect(closed.error?.code).toBe('expired');
    expect(closed.error?.message).toContain(
      `validity window of depot ship for generation 2 closed at ${validUntil}`,
    );
    expect(existsSync(join(closed.tufDir, 'timestamp.json'))).toBe(false);
  });

  it('refuses a window made for another depot, and expired metadata from a depot without a window', async () => {
    const own = windowFile(D);
    const saved = readFileSync(own);
    // The yard's genuine, open window, presented by the ship (a depot replaying another's window).
    const Y = await w.newDepot('yard');
    await w.importInto(Y, (await w.exportFor('yard', { validMs: 3 * DAY })).file);
    copyFileSync(windowFile(Y), own);
    try {
      const foreign = await fetchAt(later(2 * DAY));
      expect(foreign.error?.code).toBe('forbidden');
      expect(foreign.error?.message).toMatch(
        /is for depot yard, but the server's certificate names depot ship/,
      );
      // Nothing the refused window vouched for became trusted.
      expect(existsSync(join(foreign.tufDir, 'timestamp.json'))).toBe(false);

      // No window at all (as for a generation from an online sync): freeze protection as usual.
      rmSync(own);
      const none = await fetchAt(later(2 * DAY));
      expect(none.error?.code).toBe('expired');
      expect(none.error?.message).toMatch(
        /timestamp metadata timestamp\.json: version \d+ expired at .*has no validity window/,
      );
    } finally {
      writeFileSync(own, saved);
    }
    expect((await fetchAt(later(2 * DAY))).result?.generation).toBe(2);
  });

  it('never lets the window of one generation vouch for another', async () => {
    const own = windowFile(D);
    const gen2Window = readFileSync(own);
    await w.publish('setup', '1.1', edited(v1, 3));
    const r = await w.importInto(D, (await w.exportFor('ship', { from: 2, validMs: 3 * DAY })).file);
    expect(r.generation).toBe(3);
    expect((await fetchAt(later(2 * DAY), '1.1')).result?.generation).toBe(3);

    // The ship serves generation 3 with the (genuine, open) window of generation 2.
    writeFileSync(own, gen2Window);
    const mixed = await fetchAt(later(2 * DAY), '1.1');
    expect(mixed.error?.code).toBe('forbidden');
    expect(mixed.error?.message).toMatch(
      /serves generation 3 \(timestamp v\d+\), but its validity window covers generation 2/,
    );
    expect(existsSync(join(mixed.tufDir, 'timestamp.json'))).toBe(false);
  });
});
