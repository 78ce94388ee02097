import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MasterDb } from '../../../master/db/database.js';
import {
  addOperator,
  authenticateOperator,
  getOperator,
  listOperators,
  removeOperator,
  rotateOperatorToken,
  setOperatorDisabled,
} from '../../../master/db/operators.js';
import { hashSecret } from '../../../master/db/secret.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(() => {
  t = testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

describe('operators', () => {
  it('authenticates a bearer token by its hash', () => {
    const { operator, token } = addOperator(m, { name: 'alice', role: 'admin', createdBy: 'cli:root' });
    expect(operator).toMatchObject({ name: 'alice', role: 'admin', disabled: false, hasTotp: false });
    expect(m.db.prepare('SELECT token_hash FROM operators').get()).toEqual({ token_hash: hashSecret(token) });
    expect(authenticateOperator(m, token)).toEqual({ name: 'alice', role: 'admin' });
    expect(authenticateOperator(m, hashSecret(token))).toBeNull();
    expect(authenticateOperator(m, `${token.slice(0, 42)}${token.endsWith('A') ? 'B' : 'A'}`)).toBeNull();
    expect(authenticateOperator(m, '')).toBeNull();
    const viewer = addOperator(m, { name: 'vic', role: 'viewer', createdBy: 'alice' });
    expect(authenticateOperator(m, viewer.token)).toEqual({ name: 'vic', role: 'viewer' });
    expect(listOperators(m).map((o) => o.name)).toEqual(['alice', 'vic']);
  });

  it('refuses duplicates and bad names/roles; removes, disables and rotates', () => {
    const { token } = addOperator(m, { name: 'alice', role: 'publisher', createdBy: 'cli' });
    expect(caught(() => addOperator(m, { name: 'alice', role: 'viewer', createdBy: 'cli' })).code).toBe(
      'already-exists',
    );
    expect(caught(() => addOperator(m, { name: 'a b', role: 'viewer', createdBy: 'cli' })).code).toBe(
      'bad-input',
    );
    expect(
      caught(() => addOperator(m, { name: 'bob', role: 'root' as 'admin', createdBy: 'cli' })).message,
    ).toMatch(/operator role must be one of admin, publisher, viewer/);

    setOperatorDisabled(m, 'alice', true);
    expect(authenticateOperator(m, token)).toBeNull();
    expect(getOperator(m, 'alice')?.disabled).toBe(true);
    setOperatorDisabled(m, 'alice', false);
    const rotated = rotateOperatorToken(m, 'alice');
    expect(authenticateOperator(m, token)).toBeNull();
    expect(authenticateOperator(m, rotated)?.name).toBe('alice');

    removeOperator(m, 'alice');
    expect(authenticateOperator(m, rotated)).toBeNull();
    expect(caught(() => removeOperator(m, 'alice')).code).toBe('not-found');
  });
});
