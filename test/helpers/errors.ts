import { expect } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';

/** `fn` throws a DepotsyncError with `code` whose message matches `text`. */
export function expectError(fn: () => unknown, code: string, text: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(isDepotsyncError(e) ? e.code : e).toBe(code);
    expect((e as Error).message).toMatch(text);
    return;
  }
  throw new Error('expected an error');
}
