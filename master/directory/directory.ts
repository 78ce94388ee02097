import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { toX509 } from '../../src/pki/cert-info.js';
import {
  decodeDirectoryEntry,
  DEPOT_DIRECTORY_TARGET,
  directoryFromTarget,
  directoryTarget,
  EMPTY_DIRECTORY,
  sameMasterUrls,
  urlHost,
  withEntry,
  withMasterUrls,
  withoutEntry,
  type DepotDirectory,
  type DirectoryEntry,
} from '../../src/wire/depot-directory.js';
import type { TufRepository } from '../../src/tuf/repository.js';
import { recordAudit } from '../db/audit.js';
import { commitGeneration } from '../db/commit.js';
import { byName, type Machine } from '../db/machines.js';
import type { MasterContext } from '../context.js';
import type { Actor } from '../machines/actions.js';
import { loadRepository } from '../repository.js';

/**
 * The depot directory on the master: which depots agents may use, at which URL, in which
 * site. The signed `depots.json` target in targets.json is the only record of it (no second table to
 * drift from what agents verify); every change is a new catalog generation and an audit entry.
 */
export interface DirectoryChange {
  directory: DepotDirectory;
  generation: number;
  /** False when the entry was already exactly so: nothing was signed. */
  changed: boolean;
}

export interface ListedEntry extends DirectoryEntry {
  /** The machine's state now ('missing' when the record is gone): only approved depots are served. */
  state: Machine['state'] | 'missing';
}

export function directoryOf(repo: TufRepository): DepotDirectory {
  const t = repo.getTopTarget(DEPOT_DIRECTORY_TARGET);
  return t ? directoryFromTarget(t, `${DEPOT_DIRECTORY_TARGET} in the master's catalog`) : EMPTY_DIRECTORY;
}

export async function readDirectory(ctx: MasterContext): Promise<{
  directory: DepotDirectory;
  generation: number;
  entries: ListedEntry[];
}> {
  const repo = await loadRepository(ctx);
  const directory = directoryOf(repo);
  const entries: ListedEntry[] = [];
  for (const e of directory.depots)
    entries.push({ ...e, state: (await byName(ctx.db, e.name))?.state ?? 'missing' });
  return { directory, generation: repo.generation, entries };
}

/**
 * `directory set`: refused unless NAME is an approved depot whose certificate names the URL's host
 * (agents check both: a URL its certificate does not cover could never be used).
 */
export async function setDirectoryEntry(
  ctx: MasterContext,
  input: { name: string; url: string; site?: string | undefined },
  who: Actor,
): Promise<DirectoryChange> {
  const entry = decodeDirectoryEntry(
    { name: input.name, url: input.url, ...(input.site !== undefined ? { site: input.site } : {}) },
    `directory entry ${JSON.stringify(input.name)}`,
  );
  const machine = await approvedDepot(ctx, entry.name);
  checkCertificateCoversUrl(machine, entry.url);
  return await change(
    ctx,
    who,
    'directory.set',
    entry.name,
    (d) => {
      const old = d.depots.find((e) => e.name === entry.name);
      if (old && old.url === entry.url && old.site === entry.site) return undefined;
      return withEntry(d, entry, ctx.config.masterUrls);
    },
    { url: entry.url, ...(entry.site ? { site: entry.site } : {}) },
  );
}

export async function removeDirectoryEntry(
  ctx: MasterContext,
  name: string,
  who: Actor,
): Promise<DirectoryChange> {
  return await change(ctx, who, 'directory.remove', name, (d) => {
    if (!d.depots.some((e) => e.name === name)) {
      throw new DepotsyncError('not-found', `depot ${JSON.stringify(name)} is not in the depot directory`, {
        hint: 'list it with: depotsync master directory list --dir M',
      });
    }
    return withoutEntry(d, name, ctx.config.masterUrls);
  });
}

/**
 * `directory masters`: sign master.json's `masterUrls` into the directory (a new generation), unless it
 * lists exactly those already. Directory changes carry the setting too.
 */
export async function signMasterUrls(ctx: MasterContext, who: Actor): Promise<DirectoryChange> {
  const urls = ctx.config.masterUrls;
  return change(
    ctx,
    who,
    'directory.masters',
    'masters',
    (d) => {
      const next = withMasterUrls(d, urls);
      return sameMasterUrls(d, next) ? undefined : next;
    },
    { masterUrls: urls },
  );
}

async function change(
  ctx: MasterContext,
  who: Actor,
  action: string,
  name: string,
  next: (d: DepotDirectory) => DepotDirectory | undefined,
  detail: Record<string, unknown> = {},
): Promise<DirectoryChange> {
  for (let attempt = 1; ; attempt++) {
    const repo = await loadRepository(ctx);
    const current = directoryOf(repo);
    const directory = next(current);
    if (!directory) return { directory: current, generation: repo.generation, changed: false };
    const files = repo.updateTopTarget({ path: DEPOT_DIRECTORY_TARGET, target: directoryTarget(directory) });
    const timestamp = files.find((f) => f.role === 'timestamp');
    try {
      const c = await commitGeneration(ctx.db, {
        generation: repo.generation,
        createdBy: who.actor,
        note: `${action} ${name}`,
        ...(timestamp ? { timestampVersion: timestamp.version } : {}),
        metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
      });
      const generation = c.generation.generation;
      await recordAudit(ctx.db, {
        actor: who.actor,
        action,
        target: name,
        detail: { ...detail, directoryVersion: directory.version, generation },
        ...(who.address ? { address: who.address } : {}),
      });
      return { directory, generation, changed: true };
    } catch (e) {
      // A publish committed the next generation first: rebuild on top of it.
      if (isDepotsyncError(e, 'conflict') && attempt < 5) continue;
      throw e;
    }
  }
}

async function approvedDepot(ctx: MasterContext, name: string): Promise<Machine> {
  const m = await byName(ctx.db, name);
  if (!m)
    throw new DepotsyncError('not-found', `directory set: no machine named ${JSON.stringify(name)}`, {
      hint: 'enroll the depot first (depotsync depot init), then approve it',
    });
  if (m.role !== 'depot')
    throw new DepotsyncError('bad-input', `directory set: ${name} is an ${m.role}, not a depot`);
  if (m.state !== 'approved' || !m.certPem) {
    throw new DepotsyncError(
      'conflict',
      `directory set: depot ${name} is ${m.state}; only approved depots go into the directory`,
      {
        hint:
          m.state === 'pending'
            ? `approve it first: depotsync master approve --dir M ${name}`
            : 'agents must not be sent to a blocked or revoked depot',
      },
    );
  }
  return m;
}

function checkCertificateCoversUrl(m: Machine, url: string): void {
  const cert = toX509(m.certPem as string, `certificate of depot ${m.name}`);
  const { host, ip } = urlHost(url);
  const ok = ip ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
  if (!ok) {
    throw new DepotsyncError(
      'bad-input',
      `directory set: the certificate of depot ${m.name} does not name ${host}, the host of ${url}; agents would refuse the connection`,
      {
        hint: `use a host name the depot enrolled with, or re-enroll the depot with --host ${host}`,
      },
    );
  }
}
