import { defineConfig } from 'vitest/config';

/**
 * The catalog tests: everything that needs only a MasterDb, from test/helpers/master-db.ts. They run a
 * second time in the `postgres` project, on a throw-away PostgreSQL cluster.
 */
const CATALOG_TESTS = [
  'test/master/db/audit.test.ts',
  'test/master/db/catalog.test.ts',
  'test/master/db/machines.test.ts',
  'test/master/db/metadata.test.ts',
  'test/master/db/operators.test.ts',
  'test/master/db/status.test.ts',
  'test/master/db/tokens.test.ts',
  'test/master/notify.test.ts',
  'test/master/server/status-queue.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most end-to-end files spend their time waiting on real processes and sockets, not on CPU: vitest's
    // default (one worker per core but one) runs them one after another on a 2-core CI machine.
    maxWorkers: 3,
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: CATALOG_TESTS,
          env: { DEPOTSYNC_TEST_DB: 'postgres' },
          globalSetup: ['test/helpers/postgres-project.ts'],
        },
      },
    ],
  },
});
