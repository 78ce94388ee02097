import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { requireString } from '../src/command/args.js';
import type { Command, CommandContext } from '../src/command/command.js';
import { DepotsyncError, fromSystemError, isDepotsyncError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { HttpClient } from '../src/net/client.js';
import { DirectoryTrustedStore, TufClient } from '../src/tuf/client.js';
import { checkHashes } from '../src/tuf/hashes.js';
import type { TargetInfo } from '../src/tuf/target-info.js';
import type { RemoteLayout } from '../src/read/client.js';
import { RemoteSource } from './fetch/remote.js';

/**
 * The TUF conformance suite's client-under-test CLI (theupdateframework/tuf-conformance, CLIENT-CLI.md):
 *
 *   tuf-client --metadata-dir D init ROOT.json
 *   tuf-client --metadata-dir D --metadata-url U refresh
 *   tuf-client --metadata-dir D --metadata-url U --target-name P --target-base-url T --target-dir O download
 *
 * Exit 0 on success, 1 on any failure. Trusted metadata is kept in D under non-versioned names
 * (`root.json`, `timestamp.json`, …, delegated roles percent-quoted: DirectoryTrustedStore). The
 * verification is the agent's own TufClient and RemoteSource over plain HTTP, also for roots with
 * `consistent_snapshot: false`; a target file is checked against its signed length and EVERY hash
 * listed for it, its download capped at that length.
 */
function plainLayout(): RemoteLayout {
  return {
    metadata: (name) => `/${name}`,
    target: () => {
      throw new DepotsyncError('internal', 'tuf-client: targets come from --target-base-url');
    },
  };
}

function metadataSource(url: string, log: Logger): RemoteSource {
  return new RemoteSource(
    { name: 'repository', url, kind: 'master' },
    new HttpClient({ baseUrl: url, logger: log }),
    plainLayout(),
  );
}

async function init(dir: string, rootFile: string, log: Logger): Promise<void> {
  let bytes: Buffer;
  try {
    bytes = await readFile(rootFile);
  } catch (e) {
    throw fromSystemError(e, `trusted root ${rootFile}`);
  }
  await mkdir(dir, { recursive: true }).catch((e: unknown) => Promise.reject(fromSystemError(e, dir)));
  const store = new DirectoryTrustedStore(dir);
  // Self-signed by a threshold of its own root keys, else refused (no request to the repository).
  await TufClient.open({
    source: { fetch: () => Promise.reject(new DepotsyncError('internal', 'no network during init')) },
    store,
    initialRoot: bytes,
    fingerprint: sha256(bytes),
    logger: log,
    requireConsistentSnapshot: false,
  });
}

/** One TufClient over the repository at `url`, its trusted metadata in `dir`, refreshed (top-level roles). */
async function withClient<T>(
  dir: string,
  url: string,
  log: Logger,
  fn: (client: TufClient) => Promise<T>,
): Promise<T> {
  const source = metadataSource(url, log);
  try {
    const store = new DirectoryTrustedStore(dir);
    const client = await TufClient.open({ source, store, logger: log, requireConsistentSnapshot: false });
    await client.refresh({ bins: 'none' });
    return await fn(client);
  } finally {
    source.close();
  }
}

async function download(o: {
  dir: string;
  url: string;
  name: string;
  baseUrl: string;
  outDir: string;
  log: Logger;
}): Promise<string> {
  const { client, target } = await withClient(o.dir, o.url, o.log, async (client) => ({
    client,
    target: await client.getTarget(o.name),
  }));
  if (!target)
    throw new DepotsyncError('not-found', `target ${o.name} is not in the repository's signed metadata`);
  const file = join(o.outDir, encodeURIComponent(o.name));
  // Artifact cache: a file already here with the signed length and hash is not downloaded again.
  const have = await readFile(file).catch(() => undefined);
  if (have) {
    try {
      checkTargetFile(have, target, `cached ${o.name}`);
      return file;
    } catch {
      // stale copy: download again
    }
  }
  const slash = o.name.lastIndexOf('/');
  const consistent = client.trusted.root.md.signed.consistentSnapshot;
  // Consistent snapshots name a target file `{dir}/{hash}.{name}` by one of its listed hashes (the first).
  const hash = Object.values(target.hashes)[0];
  const path = consistent ? `${o.name.slice(0, slash + 1)}${hash}.${o.name.slice(slash + 1)}` : o.name;
  const http = new HttpClient({ baseUrl: o.baseUrl, logger: o.log });
  let bytes: Buffer;
  try {
    bytes = await http.getBytes(`/${path.split('/').map(encodeURIComponent).join('/')}`, {
      maxBytes: target.length,
      what: `target ${o.name}`,
    });
  } finally {
    http.close();
  }
  checkTargetFile(bytes, target, `target ${o.name}`);
  await mkdir(o.outDir, { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
  return file;
}

/** The signed length, and every listed hash (an unknown algorithm refuses the file). */
function checkTargetFile(bytes: Uint8Array, target: TargetInfo, what: string): void {
  if (bytes.length !== target.length) {
    const says = `the signed metadata says ${target.length}`;
    throw new DepotsyncError('hash-mismatch', `${what}: ${bytes.length} bytes, but ${says}`);
  }
  if (!Object.keys(target.hashes).length) {
    throw new DepotsyncError('bad-metadata', `${what}: the signed metadata lists no hash for it`);
  }
  checkHashes(bytes, target.hashes, what, 'the signed targets metadata');
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export const tufClientCommand: Command = {
  path: ['tuf-client'],
  usage:
    'tuf-client --metadata-dir D [--metadata-url U] [--target-name P --target-base-url T --target-dir O] init ROOT.json | refresh | download',
  summary: 'the TUF conformance suite client contract (CLIENT-CLI.md), on the agent verification code',
  options: {
    'metadata-dir': { type: 'string' },
    'metadata-url': { type: 'string' },
    'target-name': { type: 'string' },
    'target-base-url': { type: 'string' },
    'target-dir': { type: 'string' },
  },
  positionals: [1, 2],
  async run(c: CommandContext) {
    const [verb, arg] = c.positionals;
    try {
      const dir = requireString(c.values, 'metadata-dir', 'tuf-client');
      if (verb === 'init') {
        if (!arg) throw new DepotsyncError('usage', 'tuf-client init: give the trusted root file');
        await init(dir, arg, c.log);
        return { json: { ok: true }, human: `initialised ${dir}` };
      }
      const url = requireString(c.values, 'metadata-url', `tuf-client ${verb}`);
      if (verb === 'refresh') {
        await withClient(dir, url, c.log, async () => undefined);
        return { json: { ok: true }, human: 'refreshed' };
      }
      if (verb === 'download') {
        const file = await download({
          dir,
          url,
          name: requireString(c.values, 'target-name', 'tuf-client download'),
          baseUrl: requireString(c.values, 'target-base-url', 'tuf-client download'),
          outDir: requireString(c.values, 'target-dir', 'tuf-client download'),
          log: c.log,
        });
        return { json: { ok: true, file }, human: file };
      }
      throw new DepotsyncError(
        'usage',
        `tuf-client: unknown command ${JSON.stringify(verb)} (init, refresh or download)`,
      );
    } catch (e) {
      // The contract: exit 1 on any failure (usage errors included), one clear line on stderr.
      const line = isDepotsyncError(e) ? e.toLine() : ((e as Error)?.message ?? String(e));
      c.stderr.write(`depotsync tuf-client: ${line}\n`);
      return { json: { ok: false, error: isDepotsyncError(e) ? e.code : 'internal' }, exitCode: 1 };
    }
  },
};
