import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { HttpClient } from '../../src/net/client.js';
import { depotCommands, runDepotSync } from '../../depot/commands.js';
import { initDepot } from '../../depot/init.js';
import { initAgent } from '../../agent/init.js';
import { createCa, loadCa, type Ca } from '../../src/pki/ca.js';
import { caFingerprintOf } from '../../src/pki/enroll-reply.js';
import type { Root } from '@tufjs/models';
import { enrollmentCa } from '../../src/net/first-contact.js';
import { ROOT_CA_FIELD } from '../../src/tuf/root-ca.js';
import { depotLayout } from '../../depot/layout.js';
import { DepotDb } from '../../depot/db/depot-db.js';
import { SyncLock } from '../../depot/db/sync-lock.js';
import { startDepotService } from '../../depot/service.js';
import { depotStatus } from '../../depot/status.js';
import { agentCredentials, randomBytesSeeded, startUpstream, type Upstream } from './fixture.js';

let mallory: Ca | undefined;
/** A CA that is not the master's (RSA key generation is slow: one per file). */
function otherCa(): Ca {
  if (!mallory) {
    const m = createCa({ commonName: 'mallory CA' });
    mallory = loadCa(m.keyPem, m.certPem);
  }
  return mallory;
}

describe('depot init, enrollment, serve and the depot commands', () => {
  let up: Upstream;
  const dirs: string[] = [];
  const newDir = () => {
    const parent = mkdtempSync(join(tmpdir(), 'depot-init-'));
    dirs.push(parent);
    return join(parent, 'D');
  };

  beforeAll(async () => {
    up = await startUpstream();
    await up.publish('tool', '2.0', randomBytesSeeded(120_000, 21));
  });
  afterAll(async () => {
    await up.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('with a one-time token: verifies the pinned root, enrolls at once, and can sync', async () => {
    up.tokens.add('tok-1');
    const dir = newDir();
    const r = await initDepot({
      dir,
      masterUrl: up.url,
      fingerprint: up.fingerprint,
      token: 'tok-1',
      name: 'branch-a',
      hosts: ['127.0.0.1'],
      listen: '127.0.0.1:0',
      log: silentLogger(),
    });
    expect(r).toMatchObject({ state: 'approved', name: 'branch-a', rootVersion: 1 });
    const layout = depotLayout(dir);
    expect(statSync(layout.key).mode & 0o777).toBe(0o600);
    expect(existsSync(layout.cert) && existsSync(layout.caCert)).toBe(true);
    expect(up.tokens.has('tok-1')).toBe(false);
    const s = await runDepotSync(dir, { logger: silentLogger(), now: up.clock.now });
    expect(s.generation).toBe(up.repo.generation);
    const status = await depotStatus(dir);
    expect(status).toMatchObject({
      name: 'branch-a',
      servedGeneration: up.repo.generation,
      enrollment: 'approved',
      packages: 1,
      lastError: null,
    });
    expect(status.store.chunks).toBeGreaterThan(0);
  });

  it('`depot sync` while another process syncs: waits for it, then runs its own sync (or gives up after its wait)', async () => {
    up.tokens.add('tok-wait');
    const dir = newDir();
    await initDepot({
      dir,
      masterUrl: up.url,
      fingerprint: up.fingerprint,
      token: 'tok-wait',
      name: 'branch-w',
      hosts: ['127.0.0.1'],
      listen: '127.0.0.1:0',
      log: silentLogger(),
    });
    // Another live process (our parent: alive, and not us) holds the lock, as a syncing `depot serve` would.
    const db = DepotDb.open(depotLayout(dir).database, silentLogger());
    const other = new SyncLock(db, { pid: process.ppid });
    other.acquire();
    const timedOut = await runDepotSync(dir, {
      logger: silentLogger(),
      now: up.clock.now,
      waitMs: 300,
      pollMs: 50,
    }).catch((e: unknown) => e);
    expect(isDepotsyncError(timedOut, 'conflict')).toBe(true);
    expect((timedOut as Error).message).toMatch(/another sync is running on this depot \(pid \d+/);
    let finished = false;
    const waiting = runDepotSync(dir, { logger: silentLogger(), now: up.clock.now, pollMs: 50 }).finally(
      () => (finished = true),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(finished).toBe(false); // still waiting for the other sync
    other.release();
    const s = await waiting;
    expect(s.generation).toBe(up.repo.generation);
    db.close();
  });

  it('refuses a master whose 1.root.json does not match the pinned fingerprint, and leaves nothing behind', async () => {
    const dir = newDir();
    const e = await initDepot({
      dir,
      masterUrl: up.url,
      fingerprint: 'ab'.repeat(32),
      token: 'x',
      name: 'branch-b',
      log: silentLogger(),
    }).catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'hash-mismatch')).toBe(true);
    expect((e as Error).message).toMatch(/does not match the pinned fingerprint/);
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses an enrollment reply whose CA is not the one pinned with --ca-fingerprint', async () => {
    up.tokens.add('tok-2');
    const dir = newDir();
    const e = await initDepot({
      dir,
      masterUrl: up.url,
      fingerprint: up.fingerprint,
      token: 'tok-2',
      name: 'branch-c',
      caFingerprint: '00'.repeat(32),
      log: silentLogger(),
    }).catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'bad-certificate')).toBe(true);
    expect((e as Error).message).toMatch(
      /--ca-fingerprint 0{64} is not the CA the master's signed root names/,
    );
  });

  it('a man in the middle with its own CA (serving the genuine root) is refused before the token is sent', async () => {
    // Another "master": the genuine 1.root.json (so the pinned fingerprint matches), its own TLS CA.
    const mitm = await startUpstream({ ca: otherCa() });
    try {
      mitm.files.set('1.root.json', up.files.get('1.root.json')!);
      mitm.tokens.add('tok-real');
      up.tokens.add('tok-real');
      const dir = newDir();
      const e = await initDepot({
        dir,
        masterUrl: mitm.url,
        fingerprint: up.fingerprint,
        token: 'tok-real',
        name: 'branch-m',
        hosts: ['127.0.0.1'],
        listen: '127.0.0.1:0',
        log: silentLogger(),
      }).catch((x: unknown) => x);
      expect(isDepotsyncError(e)).toBe(true);
      expect((e as Error).message).toMatch(/certificate|TLS|self.signed|issuer/i);
      // The token never reached the man in the middle, and nothing of the depot stays behind.
      expect(mitm.enrollments.size).toBe(0);
      expect(mitm.tokens.has('tok-real')).toBe(true);
      expect(existsSync(dir)).toBe(false);
      // The same for an agent.
      const agentDir = newDir();
      const a = await initAgent({
        dir: agentDir,
        masterUrl: mitm.url,
        fingerprint: up.fingerprint,
        token: 'tok-real',
        name: 'agent-m',
        log: silentLogger(),
      }).catch((x: unknown) => x);
      expect(isDepotsyncError(a)).toBe(true);
      expect(mitm.enrollments.size).toBe(0);
      // Against the real master the same token works: the root names its CA.
      const r = await initDepot({
        dir: newDir(),
        masterUrl: up.url,
        fingerprint: up.fingerprint,
        token: 'tok-real',
        name: 'branch-m',
        hosts: ['127.0.0.1'],
        listen: '127.0.0.1:0',
        log: silentLogger(),
      });
      expect(r).toMatchObject({ state: 'approved', caFingerprint: caFingerprintOf(up.ca.certPem) });
    } finally {
      await mitm.close();
    }
  });

  it('refuses a --ca that is not the CA the signed root names, and a root that names no CA without --ca', async () => {
    up.tokens.add('tok-ca');
    const caFile = join(newDir() + '-ca.pem');
    writeFileSync(caFile, otherCa().certPem);
    const e = await initDepot({
      dir: newDir(),
      masterUrl: up.url,
      fingerprint: up.fingerprint,
      token: 'tok-ca',
      name: 'branch-f',
      caFile,
      log: silentLogger(),
    }).catch((x: unknown) => x);
    // The root fetch is already verified against the given --ca, and fails.
    expect(isDepotsyncError(e, 'bad-certificate')).toBe(true);
    expect((e as Error).message).toMatch(/certificate/i);
    // A --ca (or --ca-fingerprint) the server happens to match, but not the CA the signed root names.
    const root = { version: 3, unrecognizedFields: { [ROOT_CA_FIELD]: up.ca.certPem } } as unknown as Root;
    expect(enrollmentCa(root, {}, 'depot init')).toBe(up.ca.certPem);
    expect(() => enrollmentCa(root, { caPem: otherCa().certPem }, 'depot init')).toThrow(
      /depot init: the --ca certificate \(SHA-256 [0-9a-f]{64}\) is not the CA the master's signed root names/,
    );
    expect(() =>
      enrollmentCa(root, { caFingerprint: caFingerprintOf(otherCa().certPem) }, 'agent init'),
    ).toThrow(/agent init: --ca-fingerprint [0-9a-f]{64} is not the CA/);
    expect(
      enrollmentCa(root, { caPem: up.ca.certPem, caFingerprint: caFingerprintOf(up.ca.certPem) }, 'x'),
    ).toBe(up.ca.certPem);
    const notCa = { version: 3, unrecognizedFields: { [ROOT_CA_FIELD]: 'garbage' } } as unknown as Root;
    expect(() => enrollmentCa(notCa, {}, 'x')).toThrow(
      /root v3: x-depotsync-ca-certificate is not a CA certificate/,
    );
    // A master made before roots carried the CA: the operator must give it.
    const old = await startUpstream({ ca: up.ca, rootFields: {} });
    try {
      old.tokens.add('tok-old');
      const dir = newDir();
      const e2 = await initDepot({
        dir,
        masterUrl: old.url,
        fingerprint: old.fingerprint,
        token: 'tok-old',
        name: 'branch-o',
        log: silentLogger(),
      }).catch((x: unknown) => x);
      expect(isDepotsyncError(e2, 'bad-certificate')).toBe(true);
      expect((e2 as Error).message).toMatch(/names no CA certificate, and no --ca was given/);
      expect(old.enrollments.size).toBe(0);
      writeFileSync(caFile, up.ca.certPem);
      const r = await initDepot({
        dir,
        masterUrl: old.url,
        fingerprint: old.fingerprint,
        token: 'tok-old',
        name: 'branch-o',
        caFile,
        hosts: ['127.0.0.1'],
        listen: '127.0.0.1:0',
        log: silentLogger(),
      });
      expect(r.state).toBe('approved');
    } finally {
      await old.close();
    }
  });

  it('refuses a used token with a clear message', async () => {
    const e = await initDepot({
      dir: newDir(),
      masterUrl: up.url,
      fingerprint: up.fingerprint,
      token: 'tok-1',
      name: 'branch-d',
      log: silentLogger(),
    }).catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'forbidden')).toBe(true);
    expect((e as Error).message).toMatch(/enrollment of depot branch-d refused by the master: bad-token/);
  });

  it('without a token: pending until the operator approves; `depot serve` finishes the enrollment, syncs and serves', async () => {
    const dir = newDir();
    const r = await initDepot({
      dir,
      masterUrl: up.url,
      fingerprint: up.fingerprint,
      name: 'branch-e',
      hosts: ['127.0.0.1'],
      listen: '127.0.0.1:0',
      log: silentLogger(),
    });
    expect(r.state).toBe('pending');
    const sync = depotCommands.find((c) => c.path.join(' ') === 'depot sync')!;
    const e = await sync
      .run({
        values: { dir },
        positionals: [],
        json: true,
        log: silentLogger(),
        stdout: process.stdout,
        stderr: process.stderr,
      })
      .catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'unauthorized')).toBe(true);
    expect((e as Error).message).toMatch(/waiting for approval/);

    let polls = 0;
    const started = startDepotService(dir, {
      logger: silentLogger(),
      enrollPollMs: 5,
      open: { now: up.clock.now },
    });
    // The operator approves after the service has polled once.
    const request = r.request!;
    while (polls++ < 200 && !up.enrollments.get(request)) await new Promise((x) => setTimeout(x, 5));
    up.enrollments.get(request)!.approved = true;
    const service = (await started)!;
    try {
      const result = await service.sync.runNow();
      expect(result.generation).toBe(up.repo.generation);
      const { keyPem, certPem } = agentCredentials(up.ca, 'agent-e');
      const agent = new HttpClient({
        baseUrl: `https://127.0.0.1:${service.server.port}`,
        caPem: up.ca.certPem,
        keyPem,
        certPem,
      });
      try {
        const ts = await agent.getBytes('/v1/metadata/timestamp.json', { maxBytes: 16_384 });
        expect(ts.equals(up.files.get('timestamp.json')!)).toBe(true);
      } finally {
        agent.close();
      }
    } finally {
      await service.stop();
    }
    const out = await sync.run({
      values: { dir },
      positionals: [],
      json: true,
      log: silentLogger(),
      stdout: process.stdout,
      stderr: process.stderr,
    });
    expect(out.json).toEqual({
      generation: up.repo.generation,
      chunksFetched: 0,
      bytesFetched: expect.any(Number),
      // Nothing new to fetch: no chunk bytes, on the wire or plain.
      chunkWireBytes: 0,
      chunkPlainBytes: 0,
    });
  });
});
