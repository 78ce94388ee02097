import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most end-to-end files spend their time waiting on real processes and sockets, not on CPU: vitest's
    // default (one worker per core but one) runs them one after another on a 2-core CI machine.
    maxWorkers: 3,
  },
});
