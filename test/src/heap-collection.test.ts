import { describe, expect, it } from 'vitest';
import { collectGarbage } from '../../src/heap-collection.js';

describe('collectGarbage', () => {
  it('runs a full collection: an object nothing refers to is gone right after', async () => {
    let target: { payload: Buffer } | undefined = { payload: Buffer.allocUnsafeSlow(1 << 20) };
    const ref = new WeakRef(target);
    target = undefined;
    // A WeakRef's target is kept until the current job ends: collect in a later one.
    await new Promise((r) => setTimeout(r, 0));
    expect(collectGarbage()).toBe(true);
    expect(ref.deref()).toBeUndefined();
  });
});
