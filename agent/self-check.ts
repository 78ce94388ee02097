import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { optionalString, requireString } from '../src/command/args.js';
import type { Command } from '../src/command/command.js';
import type { Manifest } from '../src/content/manifest.js';
import { DepotsyncError, fromSystemError, isDepotsyncError } from '../src/errors.js';
import { parsePackageRef } from './fetch/catalog.js';
import { checkFileChunks } from './fetch/staging.js';

/**
 * The file of a package manifest that an installed executable came from: the one whose name is the
 * executable's (compared without case on Windows, where file names ignore it).
 */
export function manifestFileFor(m: Manifest, exe: string, platform = process.platform) {
  const name = platform === 'win32' ? basename(exe).toLowerCase() : basename(exe);
  const f = m.files.find((x) => {
    const last = x.path.split('/').pop() as string;
    return (platform === 'win32' ? last.toLowerCase() : last) === name;
  });
  if (!f)
    throw new DepotsyncError(
      'not-found',
      `package ${m.name}@${m.version} has no file named ${basename(exe)}`,
      {
        hint: 'check --package: it names the package this executable was installed from',
      },
    );
  return f;
}

/**
 * Verify an installed executable against the signed manifest of the package it was installed from:
 * same size, and every chunk's BLAKE3 matches (the same check a fetch makes before it commits). An
 * executable altered after its release is refused ('corrupt').
 */
export async function verifyExecutable(exe: string, m: Manifest): Promise<{ path: string; bytes: number }> {
  const f = manifestFileFor(m, exe);
  const altered = (why: string, cause?: unknown) =>
    new DepotsyncError(
      'corrupt',
      `${exe} is not the executable of ${m.name}@${m.version} (${f.path}): ${why}; refusing to run`,
      {
        hint: `install it again through the channel: depotsync-agent fetch ${m.name}@${m.version} --out DIR`,
        cause,
      },
    );
  let fh;
  try {
    fh = await open(exe, 'r');
  } catch (e) {
    throw fromSystemError(e, exe);
  }
  try {
    const { size } = await fh.stat();
    if (size !== f.size) throw altered(`${size} bytes where the manifest says ${f.size}`);
    await checkFileChunks(
      async (into, length, position) => (await fh.read(into, 0, length, position)).bytesRead,
      f,
    );
  } catch (e) {
    if (isDepotsyncError(e, 'corrupt') && !e.message.includes('refusing to run')) throw altered(e.message, e);
    throw e;
  } finally {
    await fh.close();
  }
  return { path: f.path, bytes: f.size };
}

/** `self-check --package NAME[@VERSION]`: the running executable against its package's signed manifest. */
export const selfCheckCommand: Command = {
  path: ['agent', 'self-check'],
  usage: 'agent self-check --dir A --package NAME[@VERSION] [--exe PATH]',
  summary:
    'verify this executable (or PATH) against the signed manifest of the package it was installed from; refuse an altered one',
  options: { dir: { type: 'string' }, package: { type: 'string' }, exe: { type: 'string' } },
  async run(c) {
    const want = parsePackageRef(requireString(c.values, 'package', 'self-check'));
    const exe = optionalString(c.values, 'exe') ?? process.execPath;
    const { withAgent, ranked } = await import('./commands.js');
    const { resolvePackage } = await import('./fetch/catalog.js');
    const r = await withAgent(c, async (a) => {
      const { sources } = await ranked(a, c.log);
      const failures: string[] = [];
      for (const s of sources) {
        const remote = a.connect(s);
        try {
          const pkg = await resolvePackage({
            remote,
            store: a.store,
            fingerprint: a.config.fingerprint,
            now: () => new Date(),
            state: a.state,
            want,
            log: c.log,
          });
          return { pkg, checked: await verifyExecutable(exe, pkg.manifest) };
        } catch (e) {
          // An altered executable is the verdict, not a reason to ask another source.
          if (isDepotsyncError(e, 'corrupt') && e.message.includes('refusing to run')) throw e;
          failures.push(`${s.name}: ${(e as Error).message}`);
        } finally {
          remote.close();
        }
      }
      throw new DepotsyncError('network', `self-check: no source gave the signed manifest of ${want.name}`, {
        hint: failures.join('; ') || 'configure a depot or the master (agent init)',
      });
    });
    const json = {
      exe,
      package: r.pkg.name,
      version: r.pkg.version,
      file: r.checked.path,
      bytes: r.checked.bytes,
    };
    return { json, human: `${exe}: verified against ${r.pkg.name}@${r.pkg.version} (${r.checked.path})` };
  },
};
