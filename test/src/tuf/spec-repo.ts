import { createHash, generateKeyPairSync, sign, constants, type KeyObject } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { quoteRoleName } from '../../../src/tuf/context.js';
import { MemorySource } from '../../../src/tuf/client.js';

/**
 * A small TUF repository written by hand (plain JSON, signed with node:crypto), for client tests of
 * what depotsync's own repository never makes: ECDSA and RSA-PSS keys, delegations by path pattern,
 * nested and terminating delegations, succinct hash bins, odd role names, sha512-only files,
 * `consistent_snapshot: false`.
 */
export type KeyKind = 'ed25519' | 'ecdsa' | 'rsa';

export interface TestKey {
  readonly keyid: string;
  readonly json: { keytype: string; scheme: string; keyval: { public: string } };
  sign(data: Buffer): string;
}

export function makeKey(kind: KeyKind = 'ed25519'): TestKey {
  let json: TestKey['json'];
  let signFn: (data: Buffer) => Buffer;
  if (kind === 'ed25519') {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const raw = Buffer.from(String(publicKey.export({ format: 'jwk' }).x), 'base64url');
    json = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: raw.toString('hex') } };
    signFn = (d) => sign(null, d, privateKey);
  } else if (kind === 'ecdsa') {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    json = { keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: pem(publicKey) } };
    signFn = (d) => sign('sha256', d, privateKey); // DER, as securesystemslib
  } else {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    json = { keytype: 'rsa', scheme: 'rsassa-pss-sha256', keyval: { public: pem(publicKey) } };
    signFn = (d) =>
      sign('sha256', d, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  }
  const keyid = createHash('sha256').update(canonicalize(json)).digest('hex');
  return { keyid, json, sign: (d) => signFn(d).toString('hex') };
}

function pem(k: KeyObject): string {
  return k.export({ format: 'pem', type: 'spki' }).toString();
}

export const EXPIRES = '2099-01-01T00:00:00Z';

export interface DelegationSpec {
  name: string;
  keys: TestKey[];
  threshold?: number;
  paths?: string[];
  path_hash_prefixes?: string[];
  terminating?: boolean;
}

interface RoleState {
  version: number;
  signers: TestKey[];
  targets: Record<string, { length: number; hashes: Record<string, string> }>;
  delegations?: DelegationSpec[];
  succinct?: { keys: TestKey[]; threshold: number; bit_length: number; name_prefix: string };
}

const sha = (algo: string, b: Uint8Array) => createHash(algo).update(b).digest('hex');

export class SpecRepo {
  readonly mirror = new MemorySource([], 'spec repo');
  readonly roots: Uint8Array[] = [];
  readonly roles = new Map<string, RoleState>();
  readonly top: Record<'root' | 'timestamp' | 'snapshot' | 'targets', TestKey[]>;
  rootVersion = 0;
  snapshotVersion = 0;
  timestampVersion = 0;
  /** Hash algorithms listed for metadata files in snapshot/timestamp, and for target files by default. */
  metaHashes = ['sha256'];

  constructor(
    kind: KeyKind = 'ed25519',
    readonly consistent = true,
  ) {
    this.top = {
      root: [makeKey(kind)],
      timestamp: [makeKey(kind)],
      snapshot: [makeKey(kind)],
      targets: [makeKey(kind)],
    };
    this.roles.set('targets', { version: 1, signers: this.top.targets, targets: {} });
    this.publishRoot();
  }

  get root1(): Uint8Array {
    return this.roots[0]!;
  }

  role(name: string): RoleState {
    const r = this.roles.get(name);
    if (!r) throw new Error(`no role ${name}`);
    return r;
  }

  /** Add a target file to a role (hashes: the algorithms to list). */
  addTarget(role: string, path: string, content: string | Buffer, algos = ['sha256']): void {
    const bytes = Buffer.from(content);
    this.role(role).targets[path] = {
      length: bytes.length,
      hashes: Object.fromEntries(algos.map((a) => [a, sha(a, bytes)])),
    };
  }

  /** Delegate from `parent` (creating the delegated role, signed by its delegation's keys). */
  delegate(parent: string, d: DelegationSpec): void {
    const p = this.role(parent);
    (p.delegations ??= []).push(d);
    if (!this.roles.has(d.name)) this.roles.set(d.name, { version: 1, signers: d.keys, targets: {} });
  }

  /** Succinct hash bins from `parent`: 2^bitLength roles `${prefix}-${hex}`, all signed by `keys`. */
  succinct(parent: string, keys: TestKey[], bitLength: number, prefix: string): string[] {
    this.role(parent).succinct = { keys, threshold: 1, bit_length: bitLength, name_prefix: prefix };
    const n = 2 ** bitLength;
    const len = (n - 1).toString(16).length;
    const names = Array.from({ length: n }, (_, i) => `${prefix}-${i.toString(16).padStart(len, '0')}`);
    for (const name of names) this.roles.set(name, { version: 1, signers: keys, targets: {} });
    return names;
  }

  envelope(signed: unknown, signers: TestKey[]): Uint8Array {
    const data = Buffer.from(canonicalize(signed));
    return Buffer.from(
      JSON.stringify({ signatures: signers.map((k) => ({ keyid: k.keyid, sig: k.sign(data) })), signed }),
    );
  }

  rootSigned(): Record<string, unknown> {
    const keys: Record<string, unknown> = {};
    const roles: Record<string, unknown> = {};
    for (const [role, ks] of Object.entries(this.top)) {
      for (const k of ks) keys[k.keyid] = k.json;
      roles[role] = { keyids: ks.map((k) => k.keyid), threshold: 1 };
    }
    return {
      _type: 'root',
      spec_version: '1.0.31',
      version: this.rootVersion,
      expires: EXPIRES,
      consistent_snapshot: this.consistent,
      keys,
      roles,
    };
  }

  /** Root N+1, signed by the previous root keys and the new ones (`signers`: extra signers). */
  publishRoot(mutate: (signed: Record<string, unknown>) => void = () => {}, signers?: TestKey[]): Uint8Array {
    this.rootVersion++;
    const signed = this.rootSigned();
    mutate(signed);
    const bytes = this.envelope(signed, signers ?? this.top.root);
    this.roots.push(bytes);
    this.mirror.set(`${this.rootVersion}.root.json`, bytes);
    return bytes;
  }

  targetsSigned(name: string): Record<string, unknown> {
    const r = this.role(name);
    const signed: Record<string, unknown> = {
      _type: 'targets',
      spec_version: '1.0.31',
      version: r.version,
      expires: EXPIRES,
      targets: r.targets,
    };
    if (r.delegations || r.succinct) {
      const keys: Record<string, unknown> = {};
      for (const k of [...(r.delegations ?? []).flatMap((d) => d.keys), ...(r.succinct?.keys ?? [])])
        keys[k.keyid] = k.json;
      const d: Record<string, unknown> = { keys };
      if (r.succinct)
        d.succinct_roles = { keyids: r.succinct.keys.map((k) => k.keyid), ...r.succinct, keys: undefined };
      else {
        d.roles = r.delegations!.map((x) => ({
          name: x.name,
          keyids: x.keys.map((k) => k.keyid),
          threshold: x.threshold ?? 1,
          terminating: x.terminating ?? false,
          ...(x.path_hash_prefixes ? { path_hash_prefixes: x.path_hash_prefixes } : { paths: x.paths ?? [] }),
        }));
      }
      signed.delegations = JSON.parse(JSON.stringify(d));
    }
    return signed;
  }

  fileName(role: string, version: number): string {
    return this.consistent ? `${version}.${quoteRoleName(role)}.json` : `${quoteRoleName(role)}.json`;
  }

  metaEntry(bytes: Uint8Array, version: number): Record<string, unknown> {
    return {
      version,
      length: bytes.length,
      hashes: Object.fromEntries(this.metaHashes.map((a) => [a, sha(a, bytes)])),
    };
  }

  /**
   * Publish every targets role (bumping the versions of `changed`), a new snapshot and timestamp.
   * `tamper` may replace a role's bytes after signing (to hand the client something else).
   */
  publish(
    changed: string[] = [],
    tamper: (role: string, bytes: Uint8Array) => Uint8Array = (_r, b) => b,
  ): void {
    for (const name of changed) this.role(name).version++;
    const meta: Record<string, unknown> = {};
    for (const [name, r] of this.roles) {
      const bytes = tamper(name, this.envelope(this.targetsSigned(name), r.signers));
      this.mirror.set(this.fileName(name, r.version), bytes);
      meta[`${name}.json`] = { version: r.version };
    }
    this.snapshotVersion++;
    const snap = tamper(
      'snapshot',
      this.envelope(
        { _type: 'snapshot', spec_version: '1.0.31', version: this.snapshotVersion, expires: EXPIRES, meta },
        this.top.snapshot,
      ),
    );
    this.mirror.set(this.fileName('snapshot', this.snapshotVersion), snap);
    this.timestampVersion++;
    const ts = this.envelope(
      {
        _type: 'timestamp',
        spec_version: '1.0.31',
        version: this.timestampVersion,
        expires: EXPIRES,
        meta: { 'snapshot.json': this.metaEntry(snap, this.snapshotVersion) },
      },
      this.top.timestamp,
    );
    this.mirror.set('timestamp.json', ts);
  }
}
