import { DepotsyncError } from '../../../src/errors.js';

/** Run `fn`, expect a DepotsyncError, return it (anything else fails the test). */
export function errorOf(fn: () => unknown): DepotsyncError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DepotsyncError) return e;
    throw e;
  }
  throw new Error('expected a DepotsyncError, but nothing was thrown');
}
