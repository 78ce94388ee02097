/*
 * The manifests of the packages this agent fetched last (A/manifests), one per package: the base the
 * next version's manifest is asked against as a delta (`GET /v1/targets-delta`), so an upgrade
 * downloads only what changed in it. Like the chunk cache it only ever saves bytes: a file that fails
 * its hash is removed and the manifest is fetched whole, and the rebuilt manifest is checked against
 * the signed catalog whatever base was used. Beside each manifest, `{name}.out` names the output it
 * was written to (old-version.ts reads the old chunks back from there for the next upgrade).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { join } from 'node:path';
import type { Logger } from '../../src/log.js';
import type { TargetBase } from '../../src/read/target-delta.js';

/** A served name `{sha256}.{name}@{version}.json` (src/content/paths.ts: no `/`, no `@` in names). */
const SERVED = /^([0-9a-f]{64})\.([^@/\\]+)@[^/\\]+\.json$/;

/** The sidecar naming the output a kept manifest's version was written to. */
const OUT_SUFFIX = '.out';

export class ManifestShelf {
  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** The manifest of package `name` kept by the last fetch, when its bytes still match its hash. */
  base(name: string): TargetBase | undefined {
    for (const file of this.files(name)) {
      try {
        const bytes = readFileSync(join(this.dir, file));
        if (createHash('sha256').update(bytes).digest('hex') === SERVED.exec(file)![1])
          return { name: file, bytes };
        this.log.warn({ file }, 'kept manifest does not match its hash; removed');
        rmSync(join(this.dir, file), { force: true });
        rmSync(join(this.dir, `${file}${OUT_SUFFIX}`), { force: true });
      } catch (e) {
        this.log.warn({ file, err: (e as Error).message }, 'kept manifest unreadable; fetching whole');
      }
    }
    return undefined;
  }

  /** Where the version of kept manifest `servedName` was written, if recorded. */
  output(servedName: string): string | undefined {
    try {
      const out = readFileSync(join(this.dir, `${servedName}${OUT_SUFFIX}`), 'utf8').trim();
      return out.length > 0 ? out : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Keep a verified manifest (served name `{sha256}.{path}`) in place of the package's older ones,
   * and the output it was written to.
   */
  keep(servedName: string, bytes: Uint8Array, out?: string): void {
    const m = SERVED.exec(servedName);
    if (!m) return;
    try {
      mkdirSync(this.dir, { recursive: true });
      const tmp = join(this.dir, `.${servedName}.${process.pid}.tmp`);
      writeFileSync(tmp, bytes);
      renameSync(tmp, join(this.dir, servedName));
      if (out !== undefined) {
        const tmpOut = join(this.dir, `.${servedName}${OUT_SUFFIX}.${process.pid}.tmp`);
        writeFileSync(tmpOut, `${resolve(out)}\n`);
        renameSync(tmpOut, join(this.dir, `${servedName}${OUT_SUFFIX}`));
      }
      for (const f of this.files(m[2]!)) {
        if (f === servedName) continue;
        rmSync(join(this.dir, f), { force: true });
        rmSync(join(this.dir, `${f}${OUT_SUFFIX}`), { force: true });
      }
    } catch (e) {
      this.log.warn(
        { err: (e as Error).message },
        'could not keep the manifest; the next upgrade fetches it whole',
      );
    }
  }

  /** Kept files of package `name`, newest first. */
  private files(name: string): string[] {
    let all: string[];
    try {
      all = readdirSync(this.dir);
    } catch {
      return [];
    }
    return all
      .filter((f) => SERVED.exec(f)?.[2] === name)
      .map((f) => ({ f, t: statSync(join(this.dir, f), { throwIfNoEntry: false })?.mtimeMs ?? 0 }))
      .sort((a, b) => b.t - a.t)
      .map((x) => x.f);
  }
}
