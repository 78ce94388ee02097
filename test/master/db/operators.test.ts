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
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

describe('operators', () => {
  it('authenticates a bearer token by its hash', async () => {
    const { operator, token } = await addOperator(m, { name: 'alice', role: 'admin', createdBy: 'cli:root' });
    expect(operator).toMatchObject({ name: 'alice', role: 'admin', disabled: false, hasTotp: false });
    expect(await m.sql.get('SELECT token_hash FROM operators')).toEqual({ token_hash: hashSecret(token) });
    expect(await authenticateOperator(m, token)).toEqual({ name: 'alice', role: 'admin' });
    expect(await authenticateOperator(m, hashSecret(token))).toBeNull();
    expect(
      await authenticateOperator(m, `${token.slice(0, 42)}${token.endsWith('A') ? 'B' : 'A'}`),
    ).toBeNull();
    expect(await authenticateOperator(m, '')).toBeNull();
    const viewer = await addOperator(m, { name: 'vic', role: 'viewer', createdBy: 'alice' });
    expect(await authenticateOperator(m, viewer.token)).toEqual({ name: 'vic', role: 'viewer' });
    expect((await listOperators(m)).map((o) => o.name)).toEqual(['alice', 'vic']);
  });

  it('refuses duplicates and bad names/roles; removes, disables and rotates', async () => {
    const { token } = await addOperator(m, { name: 'alice', role: 'publisher', createdBy: 'cli' });
    expect(
      (await caught(async () => await addOperator(m, { name: 'alice', role: 'viewer', createdBy: 'cli' })))
        .code,
    ).toBe('already-exists');
    expect(
      (await caught(async () => await addOperator(m, { name: 'a b', role: 'viewer', createdBy: 'cli' })))
        .code,
    ).toBe('bad-input');
    expect(
      (
        await caught(
          async () => await addOperator(m, { name: 'bob', role: 'root' as 'admin', createdBy: 'cli' }),
        )
      ).message,
    ).toMatch(/operator role must be one of admin, publisher, viewer/);

    await setOperatorDisabled(m, 'alice', true);
    expect(await authenticateOperator(m, token)).toBeNull();
    expect((await getOperator(m, 'alice'))?.disabled).toBe(true);
    await setOperatorDisabled(m, 'alice', false);
    const rotated = await rotateOperatorToken(m, 'alice');
    expect(await authenticateOperator(m, token)).toBeNull();
    expect((await authenticateOperator(m, rotated))?.name).toBe('alice');

    await removeOperator(m, 'alice');
    expect(await authenticateOperator(m, rotated)).toBeNull();
    expect((await caught(async () => await removeOperator(m, 'alice'))).code).toBe('not-found');
  });
});
