import { createHash } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import type { ChunkReader } from '../../src/serve/chunk-reader.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';
import type { KeyPair } from '../../src/tuf/keys.js';

/** Small chunks, so test packages of a few hundred KB span many of them. */
export const CHUNKING = { minBytes: 4096, avgBytes: 16384, maxBytes: 65536 };

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Change a metadata file's `signed` part and sign it again with other keys (an attacker holding them). */
export function resign(
  bytes: Uint8Array,
  signers: KeyPair[],
  mutate: (signed: any) => void = () => {},
): Buffer {
  const doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  mutate(doc.signed);
  const data = Buffer.from(canonicalize(doc.signed));
  doc.signatures = signers.map((k) => ({ keyid: k.keyid, sig: k.signer.sign(data).toString('hex') }));
  return Buffer.from(JSON.stringify(doc));
}

/** Serves `store`'s chunks, with the first byte flipped for every id in `corrupt` (read when served). */
export function corruptingChunks(store: ChunkStore, corrupt: Set<string>): ChunkReader {
  return {
    has: (id) => store.has(id),
    async get(id, o) {
      const data = await store.get(id, o);
      if (!corrupt.has(id)) return data;
      const bad = Buffer.from(data);
      bad[0] = (bad[0]! ^ 0xff) & 0xff;
      return bad;
    },
    async getStored(id, o) {
      const s = await store.getStored(id, o);
      if (!corrupt.has(id)) return s;
      const bad = Buffer.from(s.data);
      bad[0] = (bad[0]! ^ 0xff) & 0xff;
      return { ...s, data: bad };
    },
    async *readMany(ids, o) {
      for await (const r of store.readMany(ids, o)) {
        if (!r.data || !corrupt.has(r.id)) yield r;
        else {
          const flipped = Buffer.from([(r.data[0]! ^ 0xff) & 0xff]);
          yield { ...r, data: Buffer.concat([flipped, r.data.subarray(1)]) };
        }
      }
    },
  };
}
