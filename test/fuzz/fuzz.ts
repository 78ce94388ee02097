import fc from 'fast-check';
import { expect } from 'vitest';
import { DepotsyncError } from '../../src/errors.js';

/** Runs per property: small in CI (FUZZ_RUNS unset), large for a soak (FUZZ_RUNS=20000). */
export const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
export const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
export const params = { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) };

/** The decoder's only ways out: a value, or a typed DepotsyncError (never a TypeError, RangeError, …). */
export function onlyTyped<T>(f: () => T): T | DepotsyncError {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof DepotsyncError))
      throw new Error(`untyped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    expect(typeof e.code).toBe('string');
    expect(e.message.length).toBeGreaterThan(0);
    return e;
  }
}

export async function onlyTypedAsync<T>(f: () => Promise<T>): Promise<T | DepotsyncError> {
  try {
    return await f();
  } catch (e) {
    if (!(e instanceof DepotsyncError))
      throw new Error(`untyped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    return e;
  }
}

/** Valid bytes with a few random byte edits, cuts or insertions: closer to the format than pure noise. */
export function mutated(valid: Uint8Array): fc.Arbitrary<Buffer> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), byte: fc.constant(0) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 8 }).map((edits) => {
    let b = Buffer.from(valid);
    for (const e of edits) {
      const at = b.length ? e.at % (b.length + (e.kind === 'insert' ? 1 : 0)) : 0;
      if (e.kind === 'set' && b.length) b[at] = e.byte;
      else if (e.kind === 'cut') b = b.subarray(0, at);
      else if (e.kind === 'insert')
        b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
    }
    return b;
  });
}

/** JSON values that look like the wire's: objects of short keys, hex-ish strings, numbers at the edges. */
export const jsonish: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(
      null,
      true,
      false,
      0,
      -1,
      1,
      2 ** 53,
      -(2 ** 53),
      1.5,
      1e308,
      '',
      'a'.repeat(64),
      '0'.repeat(64),
    ),
    fc.string({ maxLength: 40 }),
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 12 }), tie('value'), { maxKeys: 6 }),
  ),
})).value;

/** An object with some of `keys` (the decoder's own field names) set to arbitrary values. */
export function shaped(keys: readonly string[]): fc.Arbitrary<Record<string, unknown>> {
  return fc.dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 8 })), jsonish, {
    maxKeys: keys.length + 2,
  });
}
