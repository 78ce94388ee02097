import { createHash } from 'node:crypto';
import { generateKeyPair, type KeyPair } from '../../../src/tuf/keys.js';
import { TufRepository, type MetadataFile, type RepositoryOptions } from '../../../src/tuf/repository.js';
import { MemorySource } from '../../../src/tuf/client.js';
import { resign } from '../../helpers/signed-content.js';

/** A settable clock shared by repository and client (no sleeps). */
export class Clock {
  constructor(public t = Date.parse('2030-01-01T00:00:00Z')) {}
  now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

export interface Fixture {
  clock: Clock;
  keys: { root: KeyPair[]; timestamp: KeyPair; snapshot: KeyPair; targets: KeyPair };
  repo: TufRepository;
  /** A mirror holding every file ever published (consistent snapshots: old versions stay). */
  mirror: MemorySource;
  root1: Uint8Array;
  publish(files: MetadataFile[]): void;
}

export function makeFixture(
  opts: {
    rootKeys?: number;
    threshold?: number;
    options?: RepositoryOptions;
    rootFields?: Record<string, string>;
  } = {},
): Fixture {
  const clock = new Clock();
  const keys = {
    root: Array.from({ length: opts.rootKeys ?? 1 }, generateKeyPair),
    timestamp: generateKeyPair(),
    snapshot: generateKeyPair(),
    targets: generateKeyPair(),
  };
  const { repository, files } = TufRepository.create({
    root: {
      keys: keys.root.map((k) => k.publicKey),
      threshold: opts.threshold ?? 1,
      signers: keys.root.map((k) => k.signer),
      ...(opts.rootFields ? { fields: opts.rootFields } : {}),
    },
    online: {
      timestamp: keys.timestamp.signer,
      snapshot: keys.snapshot.signer,
      targets: keys.targets.signer,
    },
    options: { now: clock.now, ...opts.options },
  });
  const mirror = new MemorySource([], 'test mirror');
  const publish = (fs: MetadataFile[]) => fs.forEach((f) => mirror.set(f.name, f.bytes));
  publish(files);
  const root1 = files.find((f) => f.name === '1.root.json')!.bytes;
  return { clock, keys, repo: repository, mirror, root1, publish };
}

export function sha256(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

export function target(i: number): {
  path: string;
  target: { length: number; sha256: string; custom: Record<string, unknown> };
} {
  return {
    path: `pkg${i}/1.0.${i}/manifest.json`,
    target: {
      length: 100 + i,
      sha256: sha256(`manifest ${i}`),
      custom: { name: `pkg${i}`, version: `1.0.${i}`, manifestId: sha256(`id ${i}`) },
    },
  };
}

/** Re-serialise a metadata file after editing its parsed JSON (signatures untouched). */
export function edit(bytes: Uint8Array, f: (doc: any) => void): Uint8Array {
  const doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  f(doc);
  return Buffer.from(JSON.stringify(doc));
}

export { resign };

/** The timestamp that names `snapshot` (version, length, sha256), signed with `key`. */
export function timestampFor(f: Fixture, snapshot: Uint8Array, key: KeyPair, version: number): Uint8Array {
  const snapVersion = JSON.parse(Buffer.from(snapshot).toString()).signed.version;
  return resign(currentFile(f, 'timestamp.json'), [key], (s) => {
    s.version = version;
    s.meta['snapshot.json'] = {
      version: snapVersion,
      length: snapshot.length,
      hashes: { sha256: sha256(snapshot) },
    };
  });
}

export function currentFile(f: Fixture, name: string): Uint8Array {
  const file = f.repo.currentFiles().find((x) => x.name === name);
  if (!file) throw new Error(`no current file ${name}`);
  return file.bytes;
}
