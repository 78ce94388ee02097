import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentFile, makeFixture, target, type Fixture } from './fixture.js';

/**
 * Conformance check against the reference TypeScript client: tuf-js must accept the repository we
 * produce (root chain, timestamp, snapshot, hashed-bin delegations) over a real HTTP server.
 */
describe('interop with tuf-js (reference client)', () => {
  let f: Fixture;
  let server: Server;
  let base: string;
  let dir: string;

  beforeAll(async () => {
    // tuf-js checks expiry against the real clock
    f = makeFixture({ options: { snapshotHashes: true, now: () => new Date() } });
    f.publish(f.repo.updateTargets(Array.from({ length: 40 }, (_, i) => target(i))));
    server = createServer((req, res) => {
      const name = (req.url ?? '').replace(/^\/metadata\//, '');
      f.mirror.fetch(name, 10_000_000).then(
        (bytes) => res.writeHead(200, { 'content-type': 'application/json' }).end(bytes),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address() as { port: number };
    base = `http://127.0.0.1:${addr.port}/metadata`;
    dir = await mkdtemp(join(tmpdir(), 'tuf-interop-'));
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('refreshes, walks a root rotation and finds targets in hashed bins', async () => {
    await writeFile(join(dir, 'root.json'), f.root1);
    const updater = () =>
      new Updater({ metadataDir: dir, metadataBaseUrl: base, config: { fetchRetries: 0 } as never });
    await updater().refresh();
    const info = await updater().getTargetInfo(target(3).path);
    expect(info?.length).toBe(target(3).target.length);
    expect(info?.hashes).toEqual({ sha256: target(3).target.sha256 });
    expect(info?.custom).toEqual(target(3).target.custom);
    expect(await updater().getTargetInfo('no/such/target')).toBeUndefined();

    // rotate the root key, add a target: tuf-js walks 2.root.json and fetches the new bin
    const { generateKeyPair } = await import('../../../src/tuf/keys.js');
    const next = generateKeyPair();
    f.publish(
      f.repo.rotateRoot({ root: { keys: [next.publicKey], threshold: 1 } }, [
        f.keys.root[0]!.signer,
        next.signer,
      ]),
    );
    f.publish(f.repo.addTarget(target(100).path, target(100).target));
    const u = updater();
    await u.refresh();
    expect((await u.getTargetInfo(target(100).path))?.length).toBe(target(100).target.length);
    const trustedRoot = JSON.parse(await readFile(join(dir, 'root.json'), 'utf8'));
    expect(trustedRoot.signed.version).toBe(2);
    expect(
      Buffer.from(await readFile(join(dir, 'root.json'))).equals(Buffer.from(currentFile(f, '2.root.json'))),
    ).toBe(true);
  });
});
