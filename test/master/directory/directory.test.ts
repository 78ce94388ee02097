import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { MemorySource, MemoryTrustedStore, rootFingerprint, TufClient } from '../../../src/tuf/client.js';
import { generateKeyPair } from '../../../src/tuf/keys.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import { listAudit } from '../../../master/db/audit.js';
import { currentGeneration } from '../../../master/db/catalog.js';
import { getMetadataFile, latestMetadata } from '../../../master/db/metadata.js';
import { requestEnrollment } from '../../../master/db/machines.js';
import { approveMachine } from '../../../master/machines/actions.js';
import {
  readDirectory,
  removeDirectoryEntry,
  setDirectoryEntry,
} from '../../../master/directory/directory.js';
import { publish } from '../../../master/publish/publish.js';
import { loadRepository } from '../../../master/repository.js';
import { directoryOfClient } from '../../../agent/directory.js';
import { runCli } from '../../helpers/cli.js';
import { tempDir } from '../../helpers/tmp.js';
import { writeFileSync } from 'node:fs';

const who = { actor: 'cli' };
const caught = async (f: () => unknown): Promise<any> => {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
};

describe('master depot directory', () => {
  const tmp = tempDir('depotsync-directory-');
  const dir = join(tmp.dir, 'M');
  let ctx: MasterContext;
  let fingerprint: string;

  const enroll = async (
    name: string,
    role: 'depot' | 'agent',
    hosts: { dnsNames?: string[]; ipAddresses?: string[] } = {},
  ) =>
    await requestEnrollment(ctx.db, {
      name,
      role,
      csrPem: createMachineKeyAndCsr({ machineName: name, role, ...hosts }).csrPem,
    });

  beforeAll(async () => {
    fingerprint = (await initMaster(dir, { log: silentLogger() })).fingerprint;
    ctx = await openMaster(dir, silentLogger());
    await enroll('depot-a', 'depot', { dnsNames: ['depot-a.example'] });
    await approveMachine(ctx, 'depot-a', who);
    await enroll('depot-b', 'depot', { ipAddresses: ['127.0.0.1'] });
    await approveMachine(ctx, 'depot-b', who);
    await enroll('depot-pending', 'depot', { dnsNames: ['pending.example'] });
    await enroll('agent-1', 'agent');
    await approveMachine(ctx, 'agent-1', who);
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  /** What an agent verifies: the master's metadata through the TUF client, up to the pinned root. */
  async function clientView() {
    const files = new Map<string, Uint8Array>();
    for (const name of ['1.root.json', 'timestamp.json'])
      files.set(name, (await getMetadataFile(ctx.db, name))!.bytes);
    for (const role of ['snapshot', 'targets']) {
      const f = (await latestMetadata(ctx.db, role))!;
      files.set(f.name, f.bytes);
    }
    const client = await TufClient.open({
      source: new MemorySource(files),
      store: new MemoryTrustedStore(),
      fingerprint,
    });
    const r = await client.refresh({ bins: 'none' });
    return { directory: directoryOfClient(client, 'master'), generation: r.generation };
  }

  it('set signs a new generation whose targets.json carries the directory, audit-logged', async () => {
    const before = await currentGeneration(ctx.db);
    const r = await setDirectoryEntry(
      ctx,
      { name: 'depot-a', url: 'https://depot-a.example:8443/', site: 'paris' },
      who,
    );
    expect(r).toMatchObject({
      changed: true,
      generation: before + 1,
      directory: {
        version: 1,
        depots: [{ name: 'depot-a', url: 'https://depot-a.example:8443', site: 'paris' }],
      },
    });
    const view = await clientView();
    expect(view.generation).toBe(before + 1);
    expect(view.directory).toEqual(r.directory);
    const audit = (await listAudit(ctx.db, { action: 'directory.set' })).entries[0]!;
    expect(audit).toMatchObject({
      actor: 'cli',
      target: 'depot-a',
      detail: {
        url: 'https://depot-a.example:8443',
        site: 'paris',
        directoryVersion: 1,
        generation: before + 1,
      },
    });
    // The same entry again: nothing signed.
    expect(
      await setDirectoryEntry(
        ctx,
        { name: 'depot-a', url: 'https://depot-a.example:8443', site: 'paris' },
        who,
      ),
    ).toMatchObject({ changed: false, generation: before + 1 });
  });

  it('publishing a package and reloading the repository keep the directory', async () => {
    writeFileSync(join(tmp.dir, 'p.bin'), Buffer.from('payload'));
    const p = await publish(ctx, { name: 'pkg', version: '1.0', path: join(tmp.dir, 'p.bin'), actor: 'cli' });
    const repo = await loadRepository(ctx);
    expect(repo.generation).toBe(p.generation);
    const view = await clientView();
    expect(view.directory.depots.map((d) => d.name)).toEqual(['depot-a']);
    expect([...repo.targets()].map((t) => t.path)).toEqual(['pkg@1.0.json']); // the directory is not a package
  });

  it('the bins key rotation keeps the top-level directory target', async () => {
    const repo = await loadRepository(ctx);
    const k = generateKeyPair();
    repo.rotateBinsKey(k.signer);
    expect(repo.getTopTarget('depots.json')?.custom).toMatchObject({ depotDirectory: { version: 1 } });
  });

  it('refuses a non-https URL, a bad name, a pending depot, an agent, and a host the certificate does not name; nothing is signed', async () => {
    const gen = await currentGeneration(ctx.db);
    const cases: Array<[Parameters<typeof setDirectoryEntry>[1], string, RegExp]> = [
      [{ name: 'depot-b', url: 'http://127.0.0.1:9000' }, 'bad-input', /must use https/],
      [{ name: 'depot-b', url: 'https://127.0.0.1:9000?x' }, 'bad-input', /query or fragment/],
      [{ name: '../depot', url: 'https://127.0.0.1:9000' }, 'bad-input', /name: does not match/],
      [{ name: 'depot-b', url: 'https://127.0.0.1', site: 'two words' }, 'bad-input', /site: does not match/],
      [{ name: 'nobody', url: 'https://127.0.0.1' }, 'not-found', /no machine named "nobody"/],
      [
        { name: 'depot-pending', url: 'https://pending.example' },
        'conflict',
        /depot-pending is pending; only approved depots/,
      ],
      [{ name: 'agent-1', url: 'https://127.0.0.1' }, 'bad-input', /agent-1 is an agent, not a depot/],
      [
        { name: 'depot-b', url: 'https://depot-b.example' },
        'bad-input',
        /certificate of depot depot-b does not name depot-b\.example/,
      ],
    ];
    for (const [input, code, why] of cases) {
      const e = await caught(async () => await setDirectoryEntry(ctx, input, who));
      expect(e.code, JSON.stringify(input)).toBe(code);
      expect(e.message).toMatch(why);
    }
    expect(await currentGeneration(ctx.db)).toBe(gen);
  });

  it('list shows every entry with its machine state; remove drops one in a new generation', async () => {
    await setDirectoryEntry(ctx, { name: 'depot-b', url: 'https://127.0.0.1:9443' }, who);
    const listed = await readDirectory(ctx);
    expect(listed.entries).toEqual([
      { name: 'depot-a', url: 'https://depot-a.example:8443', site: 'paris', state: 'approved' },
      { name: 'depot-b', url: 'https://127.0.0.1:9443', state: 'approved' },
    ]);
    const r = await removeDirectoryEntry(ctx, 'depot-a', who);
    expect(r.directory).toMatchObject({ version: 3, depots: [{ name: 'depot-b' }] });
    expect((await clientView()).directory).toEqual(r.directory);
    expect((await caught(async () => await removeDirectoryEntry(ctx, 'depot-a', who))).code).toBe(
      'not-found',
    );
    expect((await listAudit(ctx.db, { action: 'directory.remove' })).entries[0]).toMatchObject({
      target: 'depot-a',
      detail: { directoryVersion: 3 },
    });
  });

  it('CLI: set/list/remove with --json; a bad URL is one clear stderr line and exit 1', async () => {
    await ctx.close();
    try {
      const set = runCli([
        'master',
        'directory',
        'set',
        '--dir',
        dir,
        'depot-a',
        '--url',
        'https://depot-a.example',
        '--site',
        'lyon',
        '--json',
      ]);
      expect(set.status, set.stderr).toBe(0);
      expect(set.json).toMatchObject({
        name: 'depot-a',
        url: 'https://depot-a.example',
        site: 'lyon',
        directoryVersion: 4,
        changed: true,
      });
      const list = runCli(['master', 'directory', 'list', '--dir', dir, '--json']);
      expect(list.json.depots.map((d: { name: string }) => d.name)).toEqual(['depot-a', 'depot-b']);
      const bad = runCli([
        'master',
        'directory',
        'set',
        '--dir',
        dir,
        'depot-a',
        '--url',
        'http://depot-a.example',
      ]);
      expect(bad.status).toBe(1);
      expect(bad.stderr.trim().split('\n')).toHaveLength(1);
      expect(bad.stderr).toMatch(/must use https/);
      const usage = runCli(['master', 'directory', 'set', '--dir', dir, 'depot-a']);
      expect(usage.status).toBe(2);
      const rm = runCli(['master', 'directory', 'remove', '--dir', dir, 'depot-b', '--json']);
      expect(rm.json).toMatchObject({ name: 'depot-b', removed: true, directoryVersion: 5 });
    } finally {
      ctx = await openMaster(dir, silentLogger());
    }
    expect((await readDirectory(ctx)).directory.depots.map((d) => d.name)).toEqual(['depot-a']);
    expect(rootFingerprint((await getMetadataFile(ctx.db, '1.root.json'))!.bytes)).toBe(fingerprint);
  });
});
