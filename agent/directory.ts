import { join } from 'node:path';
import { readJsonFile } from '../src/config/json-file.js';
import { DepotsyncError, isDepotsyncError, type ErrorCode } from '../src/errors.js';
import { writeFileAtomic } from '../src/fs/atomic-write.js';
import type { Logger } from '../src/log.js';
import type { ClientLimits, TrustedStore, TufClient } from '../src/tuf/client.js';
import { own } from '../src/tuf/codec.js';
import { targetInfoOf } from '../src/tuf/target-info.js';
import {
  DEPOT_DIRECTORY_TARGET,
  decodeDirectory,
  directoryFromTarget,
  encodeDirectory,
  EMPTY_DIRECTORY,
  type DepotDirectory,
} from '../src/wire/depot-directory.js';
import { Fields } from '../src/wire/decode.js';
import { checkAgainstSeen } from './fetch/catalog.js';
import { fatalRefusal } from '../src/read/refusal.js';
import type { RemoteSource, Source } from './fetch/remote.js';
import { refreshCatalog } from './fetch/validity-window.js';
import { acrossEquivalentServers } from '../src/net/url-picker.js';
import type { AgentStateStore } from './state.js';

/**
 * The agent's copy of the signed depot directory (src/wire/depot-directory.ts). It is read
 * from targets.json after the TUF update verified it up to the pinned root (signatures, expiry, the
 * snapshot's version, this agent's generation baseline), then adopted into `A/directory.json` only if
 * its version is not older than the adopted one (rollback). Refreshed before every fetch; a depot that
 * left the directory is no longer used.
 */
export interface AdoptedDirectory {
  directory: DepotDirectory;
  /** The catalog generation it was read from, and the source that served it. */
  generation: number;
  source: string;
}

export function directoryFile(agentDir: string): string {
  return join(agentDir, 'directory.json');
}

/** The adopted directory, or undefined before the first refresh. */
export function loadAdoptedDirectory(agentDir: string): AdoptedDirectory | undefined {
  const path = directoryFile(agentDir);
  let value: unknown;
  try {
    value = readJsonFile(path, { what: 'depot directory', missing: { message: '', hint: '' } });
  } catch (e) {
    if (isDepotsyncError(e, 'not-found')) return undefined;
    throw new DepotsyncError(
      'corrupt',
      `${path}: the adopted depot directory cannot be read (${(e as Error).message})`,
      { hint: `delete ${path}; the next fetch adopts the signed directory again`, cause: e },
    );
  }
  try {
    const f = Fields.of(path, value);
    const generation = f.int('generation', { min: 1 });
    const source = f.string('source', { max: 64 });
    f.done();
    return {
      directory: decodeDirectory((value as Record<string, unknown>).directory, `${path}: directory`),
      generation,
      source,
    };
  } catch (e) {
    // Not a source's fault: say so instead of penalising whichever depot is asked next.
    throw new DepotsyncError(
      'corrupt',
      `${path}: the adopted depot directory is damaged (${(e as Error).message})`,
      {
        hint: `delete ${path}; the next fetch adopts the signed directory again`,
        cause: e,
      },
    );
  }
}

/** The directory that targets.json (already verified by the client) lists, or the empty one. */
export function directoryOfClient(client: TufClient, what: string): DepotDirectory {
  const targets = client.trusted.targets;
  if (!targets) throw new DepotsyncError('internal', `${what}: no verified targets.json yet`);
  const t = own(targets.md.signed.targets, DEPOT_DIRECTORY_TARGET);
  return t ? directoryFromTarget(targetInfoOf(t), `${DEPOT_DIRECTORY_TARGET} from ${what}`) : EMPTY_DIRECTORY;
}

/**
 * Adopt `next` unless it is older than the adopted directory (rollback: a source replaying an old
 * directory would bring back a depot the operator removed) or differs under the same version.
 * Returns true when the file changed.
 */
export async function adoptDirectory(
  agentDir: string,
  next: AdoptedDirectory,
  what: string,
): Promise<boolean> {
  const current = loadAdoptedDirectory(agentDir);
  if (current) {
    const have = current.directory.version;
    if (next.directory.version < have) {
      throw new DepotsyncError(
        'version-rollback',
        `${what}: depot directory version ${next.directory.version} is older than version ${have} this agent has already adopted`,
        {
          hint: 'the source replays an old directory; the agent uses another source',
        },
      );
    }
    if (next.directory.version === have) {
      if (!encodeDirectory(next.directory).equals(encodeDirectory(current.directory))) {
        throw new DepotsyncError(
          'bad-metadata',
          `${what}: depot directory version ${have} differs from the one this agent adopted under the same version`,
          {
            hint: 'two different directories were signed with one version; report it to the master operator',
          },
        );
      }
      if (next.generation <= current.generation) return false;
    }
  }
  await writeFileAtomic(
    directoryFile(agentDir),
    `${JSON.stringify({ generation: next.generation, source: next.source, directory: next.directory }, null, 2)}\n`,
  );
  return true;
}

/** Failures of this computer, not of the source: they end the refresh instead of penalising a depot. */
const LOCAL_FAILURES: readonly ErrorCode[] = ['internal', 'io', 'disk-full', 'corrupt'];

export interface RefreshDirectoryOptions {
  agentDir: string;
  /** In order of preference (the previous ranking). */
  sources: readonly Source[];
  connect: (source: Source) => RemoteSource;
  store: TrustedStore;
  fingerprint?: string | undefined;
  state: AgentStateStore;
  now: () => Date;
  limits?: Partial<ClientLimits> | undefined;
  penaltyMs: number;
  log: Logger;
}

export interface DirectoryRefresh {
  /** The adopted directory after the refresh (unchanged when every source failed). */
  adopted: AdoptedDirectory | undefined;
  /** The source that served it, or undefined when every source failed. */
  source?: string;
  changed: boolean;
  failures: Array<{ source: string; error: string }>;
}

/**
 * The TUF update (metadata only: timestamp, snapshot, targets.json) from the first source that passes
 * every check, then the directory it carries. A source that fails (forged or tampered metadata, a
 * rollback, an error) is penalised like in a fetch and the next one is tried; when all fail, the
 * adopted directory stays as it was and the fetch goes on with it (and reports its own errors).
 */
export async function refreshDirectory(o: RefreshDirectoryOptions): Promise<DirectoryRefresh> {
  const failures: DirectoryRefresh['failures'] = [];
  for (const s of o.sources) {
    const remote = o.connect(s);
    try {
      const what = `${s.name} (${s.url})`;
      const { client, result } = await acrossEquivalentServers(
        remote.http.picker,
        async () => {
          const out = await refreshCatalog({
            remote,
            store: o.store,
            fingerprint: o.fingerprint,
            now: o.now,
            limits: o.limits,
            log: o.log,
            bins: 'none',
          });
          checkAgainstSeen(out.result, o.state, s.name);
          return out;
        },
        (refused, next, e) =>
          o.log.warn(
            { source: s.name, refused, next, err: e.message },
            'master URL refused; trying the next',
          ),
      );
      const next = {
        directory: directoryOfClient(client, what),
        generation: result.generation,
        source: s.name,
      };
      const changed = await adoptDirectory(o.agentDir, next, what);
      if (changed)
        o.log.info(
          { source: s.name, version: next.directory.version, depots: next.directory.depots.length },
          'depot directory adopted',
        );
      return { adopted: loadAdoptedDirectory(o.agentDir), source: s.name, changed, failures };
    } catch (e) {
      if (fatalRefusal(e)) throw remote.explain(e);
      if (LOCAL_FAILURES.some((code) => isDepotsyncError(e, code))) throw e;
      const message = (e as Error)?.message ?? String(e);
      failures.push({ source: s.name, error: message });
      o.state.penalize(s.url, o.now().getTime() + o.penaltyMs, message);
      o.log.warn(
        { source: s.name, err: message },
        'depot directory refresh failed at this source; trying the next',
      );
    } finally {
      remote.close();
    }
  }
  return { adopted: loadAdoptedDirectory(o.agentDir), changed: false, failures };
}
