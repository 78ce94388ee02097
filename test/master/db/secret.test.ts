import { describe, expect, it } from 'vitest';
import { looksLikeSecret, newSecret } from '../../../master/db/secret.js';

describe('bearer secrets', () => {
  it('never start with a dash or underscore, so `--token SECRET` is never read as an option', () => {
    // With 1/32 of base64url draws starting with '-' and another 1/32 with '_', 4000 draws would
    // show both about 125 times each if the generator did not redraw.
    const secrets = Array.from({ length: 4000 }, () => newSecret());
    for (const s of secrets) {
      expect(s).toMatch(/^[A-Za-z0-9]/);
      expect(looksLikeSecret(s)).toBe(true);
    }
    expect(new Set(secrets).size).toBe(secrets.length);
    // Dashes and underscores still occur inside: the alphabet is unchanged.
    expect(secrets.some((s) => s.slice(1).includes('-'))).toBe(true);
  });
});
