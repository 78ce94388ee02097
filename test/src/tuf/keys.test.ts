import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, verify } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { afterEach, describe, expect, it } from 'vitest';
import {
  generateKeyPair,
  keyIdOf,
  publicKeyObject,
  readPrivateKey,
  writePrivateKey,
} from '../../../src/tuf/keys.js';
import { sha256 } from './fixture.js';

describe('tuf keys', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('makes Ed25519 keys in TUF form with keyid = sha256 of the canonical public key', () => {
    const k = generateKeyPair();
    expect(k.publicKey.keytype).toBe('ed25519');
    expect(k.publicKey.scheme).toBe('ed25519');
    expect(k.publicKey.keyval.public).toMatch(/^[0-9a-f]{64}$/);
    expect(k.keyid).toBe(sha256(canonicalize(k.publicKey)));
    expect(keyIdOf(k.publicKey)).toBe(k.keyid);
    // The hex public key is the raw 32 bytes of the node key.
    const raw = createPublicKey(k.privateKey).export({ format: 'der', type: 'spki' }).subarray(-32);
    expect(raw.toString('hex')).toBe(k.publicKey.keyval.public);
  });

  it('signs with the signer and verifies with node:crypto from the TUF form', () => {
    const k = generateKeyPair();
    const data = Buffer.from('hello');
    const sig = k.signer.sign(data);
    expect(verify(null, data, publicKeyObject(k.publicKey, 'test'), sig)).toBe(true);
    expect(verify(null, Buffer.from('hellO'), publicKeyObject(k.publicKey, 'test'), sig)).toBe(false);
  });

  it('writes private keys as PKCS#8 PEM with mode 0600 and reads them back', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tuf-keys-'));
    const k = generateKeyPair();
    const path = join(dir, 'timestamp.pem');
    await writePrivateKey(path, k.privateKey);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const back = await readPrivateKey(path);
    expect(back.keyid).toBe(k.keyid);
    await expect(readPrivateKey(join(dir, 'missing.pem'))).rejects.toMatchObject({ code: 'not-found' });
  });

  it('refuses keys that are not Ed25519 hex', () => {
    expect(() =>
      publicKeyObject({ keytype: 'rsa' as never, scheme: 'ed25519', keyval: { public: 'ab' } }, 'k'),
    ).toThrow(/unsupported key type/);
    expect(() =>
      publicKeyObject({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'xyz' } }, 'k'),
    ).toThrow(/64 lowercase hex/);
  });
});
