// Lint: typescript-eslint's type-aware rules for what costs real bugs here (promises left floating or passed where
// a callback returns void, `any` leaking out of untyped JSON, unsafe arithmetic on unions), on every source folder.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.bench-tmp/**', 'master/admin/dashboard/assets/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false, attributes: false } },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // async implementations of async interfaces and callbacks: dropping `async` would make their throws synchronous.
      '@typescript-eslint/require-await': 'off',
      // The path, JSON and name checks refuse control characters on purpose.
      'no-control-regex': 'off',
      // A caught `unknown` kept for later is rethrown as is; `!== undefined` narrows it to `{}`, which this refuses.
      '@typescript-eslint/only-throw-error': 'off',
      // Rejections pass on caught values (typed `unknown`) unchanged, as throw statements may.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // Benchmarks and the demo read the CLI's own --json output (runJson returns the parsed object as is).
    files: ['bench/**/*.ts', 'cli/demo/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['bin/**/*.js', '*.js', '*.mjs', '*.cjs', 'scripts/**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
