import { Metadata, MetadataKind } from '@tufjs/models';
import { describe, expect, it } from 'vitest';
import { metadataToJSON, signedFromJSON } from '../../../src/tuf/codec.js';
import { makeFixture, target } from './fixture.js';

describe('linear codec', () => {
  it('gives exactly the JSON and models that @tufjs/models gives', () => {
    const f = makeFixture({ options: { binCount: 16, snapshotHashes: true } });
    f.repo.updateTargets([target(1), target(2), target(3), { path: '__proto__', target: target(4).target }]);
    const kinds: Record<string, MetadataKind> = {
      root: MetadataKind.Root,
      timestamp: MetadataKind.Timestamp,
      snapshot: MetadataKind.Snapshot,
    };
    for (const file of f.repo.currentFiles()) {
      const doc = JSON.parse(Buffer.from(file.bytes).toString());
      const kind = kinds[file.role] ?? MetadataKind.Targets;
      const theirs = Metadata.fromJSON(kind as MetadataKind.Root, doc);
      // serialisation: our bytes are the models' toJSON
      expect(JSON.stringify(metadataToJSON(theirs as never))).toBe(JSON.stringify(theirs.toJSON()));
      expect(Buffer.from(file.bytes).toString()).toBe(JSON.stringify(theirs.toJSON()));
      // parsing: our objects equal the models' objects
      expect(signedFromJSON(kind, doc.signed).equals(theirs.signed as never)).toBe(true);
    }
    expect(f.repo.getTarget('__proto__')?.length).toBe(target(4).target.length);
  });
});
