import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Packages that need a compiler at install (native addons), and what pulls them in. */
const NATIVE = [/^better-sqlite3/, /^blake3$/, /^@c4312\/blake3-native/, /^zstd-napi/, /^@napi-rs\//];

/**
 * The agent's module graph as a bundler sees it (the self-contained agent is built this way): every
 * static and lazy `import` from the agent's commands, npm packages left outside. None of them may be
 * a native addon: the agent runs where nothing was compiled. (BLAKE3's native addon is only tried at
 * run time through require, with the WebAssembly build as the fallback; the e2e test
 * agent-no-native runs the agent with every addon refused.)
 */
describe('the agent imports no native addon', () => {
  it('bundling agent/commands.ts and agent/tuf-client-command.ts names none', async () => {
    const r = await build({
      absWorkingDir: root,
      entryPoints: ['agent/commands.ts', 'agent/tuf-client-command.ts'],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      write: false,
      metafile: true,
      outdir: 'dist-agent-graph-check',
      logLevel: 'silent',
    });
    const external = new Map<string, string>();
    for (const [file, input] of Object.entries(r.metafile.inputs))
      for (const imp of input.imports) if (imp.external) external.set(imp.path, file);
    const native = [...external].filter(([p]) => NATIVE.some((re) => re.test(p)));
    expect(native.map(([p, from]) => `${p} <- ${from}`)).toEqual([]);
    // The check sees the agent's code at all: its own files and its npm packages are in the graph.
    expect(Object.keys(r.metafile.inputs)).toContain('agent/fetch/fetch.ts');
    expect(Object.keys(r.metafile.inputs)).toContain('agent/fetch/file-cache.ts');
    expect([...external.keys()]).toContain('node-forge');
    // BLAKE3's WebAssembly build is a static import, so a bundle carries it.
    expect([...external.keys()]).toContain('blake3-wasm');
    // Nothing of the SQLite-based stores either.
    const ours = Object.keys(r.metafile.inputs).filter((f) =>
      /^src\/(db|store\/chunk-(store|index))/.test(f),
    );
    expect(ours).toEqual([]);
  });
});
