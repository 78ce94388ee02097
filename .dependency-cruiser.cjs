/** Import rules that keep the architecture visible (docs/contributing.md): checked by `npm run deps:check`. */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles between files (and so none between folders built from them).',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-is-a-leaf',
      severity: 'error',
      comment: 'src/ is the shared core: it imports no role folder and no CLI wiring.',
      from: { path: '^src/' },
      to: { path: '^(master|depot|agent|cli)/' },
    },
    {
      name: 'roles-stay-apart',
      severity: 'error',
      comment: 'A role composes the core; it never imports another role or the CLI wiring.',
      from: { path: '^(master|depot|agent)/' },
      to: { path: '^(master|depot|agent|cli)/', pathNot: '^$1/' },
    },
    {
      name: 'no-test-code-in-production',
      severity: 'error',
      from: { path: '^(src|master|depot|agent|cli)/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
