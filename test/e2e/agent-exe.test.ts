import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { agentMain } from '../../cli/agent-main.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';
import { agentBuild, CACHE, rebuild, ROOT, type AgentBuild } from './agent-exe-build.js';
import { buildMarkerExe, buildMsi, MSI_FOLDER, MSI_PAYLOAD } from './agent-exe-installers.js';

/**
 * The self-contained agent executables (scripts/package-agent.mjs, docs/windows-agent.md): the Linux one
 * run from a folder without node_modules, the Windows one under wine, against a real master and depot on
 * 127.0.0.1. While the agent's module graph still imports a native addon (the build's `nativeStubs`), the
 * executables cannot keep state: the end-to-end flow then checks that they fail with a clear message,
 * and runs in full as soon as the graph is clean.
 */
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const WINE = ['/usr/bin/wine', '/usr/lib/wine/wine64'].find((p) => existsSync(p));

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  json: any;
}

function parse(status: number | null, stdout: string, stderr: string, args: string[]): Run {
  let json: any;
  if (args.includes('--json')) {
    try {
      json = JSON.parse(stdout.trim().split('\n').pop() ?? '');
    } catch {
      json = undefined;
    }
  }
  return { status: status ?? -1, stdout, stderr, json };
}

describe('self-contained agent executables', () => {
  const tmp = tempDir('depotsync-agent-exe-');
  const services: Service[] = [];
  let build: AgentBuild;
  let linuxExe: string;
  let M: string;
  let D: string;
  let fp: string;
  let masterUrl: string;
  let depotUrl: string;
  let v1: Buffer;
  let v2: Buffer;
  /** The second build of the Linux executable (the determinism check), made while the services start. */
  let again: Promise<string | undefined>;

  beforeAll(async () => {
    build = agentBuild();
    const againDir = join(tmp.dir, 'again');
    again = rebuild('linux-x64', againDir).then(
      () => sha(readFileSync(join(againDir, 'depotsync-agent-linux-x64'))),
      (e: Error) => e.message,
    );
    // A folder with nothing else: no node_modules above it either (the temporary folder is outside the project).
    const clean = join(tmp.dir, 'bin');
    mkdirSync(clean);
    linuxExe = join(clean, 'depotsync-agent');
    copyFileSync(build.linux, linuxExe);
    chmodSync(linuxExe, 0o755);

    M = join(tmp.dir, 'M');
    D = join(tmp.dir, 'D');
    fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    v1 = pseudoRandomBytes(1_500_000, 21);
    // v1 and more: the manifest of v2 shares v1's chunk list, so it comes as a delta against v1's.
    v2 = Buffer.concat([v1, pseudoRandomBytes(6_500_000, 22)]);
    writeFileSync(join(tmp.dir, 'v1.bin'), v1);
    writeFileSync(join(tmp.dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(tmp.dir, 'v1.bin')]);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '2', join(tmp.dir, 'v2.bin')]);
    // A release folder as a package: the channel distributes the agent itself. The Linux executable and
    // build-info.json only: the self-check runs here on Linux, and the 70 MiB Windows one would only add
    // to the publish, the depot's sync and the fetch (package-agent's folder is published whole in use).
    const release = join(tmp.dir, 'release');
    mkdirSync(release);
    for (const f of ['depotsync-agent-linux-x64', 'build-info.json'])
      copyFileSync(join(build.dir, f), join(release, f));
    runJson(['master', 'publish', '--dir', M, '--name', 'depotsync-agent', '--version', '1', release]);
    // Windows installers for fetch --install / --exec: an .exe (mingw-w64), an .msi (wixl), a broken .msi.
    const inst = join(tmp.dir, 'installers');
    const setup = buildMarkerExe(inst);
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1', setup]);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool-msi', '--version', '1', buildMsi(inst)]);
    writeFileSync(join(inst, 'broken.msi'), 'not an installer database');
    runJson([
      'master',
      'publish',
      '--dir',
      M,
      '--name',
      'broken-msi',
      '--version',
      '1',
      join(inst, 'broken.msi'),
    ]);
    const [mp, dp] = [await freePort(), await freePort()];
    masterUrl = `https://127.0.0.1:${mp}`;
    depotUrl = `https://127.0.0.1:${dp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-1', port: dp });
    // No chunks in the depot's memory: the second flow fetches what the first did, and chunks asked for
    // twice are served from memory, which would hide the packs altered on disk from the tampered-depot step.
    const depotJson = join(D, 'depot.json');
    const settings = JSON.parse(readFileSync(depotJson, 'utf8')) as { serving?: Record<string, unknown> };
    settings.serving = { ...settings.serving, hotChunkBytes: 0 };
    writeFileSync(depotJson, `${JSON.stringify(settings, null, 2)}\n`);
    services.push(startService('depot-1', ['depot', 'serve', '--dir', D]));
    await waitForHttps(depotUrl);
    await until(
      'the depot to sync',
      () => (runCli(['status', '--dir', D, '--json']).json?.servedGeneration >= 6 ? true : undefined),
      { timeoutMs: 60_000 },
    );
  }, 400_000);

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    await again; // its output is in tmp.dir
    tmp.cleanup();
  });

  const token = () => runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;

  /** Enroll, fetch byte for byte, refuse a lying depot, resume after a kill: for either executable. */
  async function fullFlow(
    run: (args: string[]) => Run,
    spawnArgs: (args: string[]) => string[],
    where: (p: string) => string,
    tag: string,
  ) {
    const A = join(tmp.dir, `A-${tag}`);
    const init = run([
      'init',
      '--dir',
      where(A),
      '--master',
      masterUrl,
      '--fingerprint',
      fp,
      '--token',
      token(),
      '--name',
      `pc-${tag}`,
      '--depot',
      depotUrl,
      '--json',
    ]);
    expect(init.status, init.stderr).toBe(0);
    expect(init.json).toMatchObject({ state: 'approved' });

    const out1 = join(tmp.dir, `out1-${tag}.bin`);
    const f1 = run(['fetch', '--dir', where(A), 'tool@1', '--out', where(out1), '--json']);
    expect(f1.status, f1.stderr).toBe(0);
    expect(sha(readFileSync(out1))).toBe(sha(v1));

    // Killed mid-way, then run again: the verified chunks staged before the kill are reused.
    const out2 = join(tmp.dir, `out2-${tag}.bin`);
    const debug = ['--log-level', 'debug'];
    const [cmd, ...rest] = spawnArgs(['fetch', '--dir', where(A), 'tool@2', '--out', where(out2), ...debug]);
    const childLog = join(tmp.dir, `killed-${tag}.log`);
    const childErr = openSync(childLog, 'w');
    const child = spawn(cmd as string, rest, {
      stdio: ['ignore', 'ignore', childErr],
      env: { ...process.env, NODE_SKIP_PLATFORM_CHECK: '1' },
    });
    closeSync(childErr);
    // Killed once its staging folder (beside --out) exists, or when it ended first on a fast machine.
    await until(
      'the fetch to stage chunks',
      () =>
        readdirSync(tmp.dir).some((n) => n.includes(`out2-${tag}.bin.`)) || child.exitCode !== null
          ? true
          : undefined,
      { everyMs: 20, timeoutMs: 60_000 },
    );
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    const f2 = run(['fetch', '--dir', where(A), 'tool@2', '--out', where(out2), '--json', ...debug]);
    expect(f2.status, f2.stderr).toBe(0);
    expect(sha(readFileSync(out2))).toBe(sha(v2));
    // v2's manifest came as a delta against v1's, decoded by the WebAssembly zstd inside the executable:
    // in the killed run, or in the second one when the first was killed before keeping v1's successor.
    const rebuilt = `${readFileSync(childLog, 'utf8')}\n${f2.stderr}`
      .split(/\r?\n/)
      .filter((l) => l.includes('manifest rebuilt from a delta'))
      .map((l) => JSON.parse(l) as { zstd?: string });
    expect(rebuilt.length, f2.stderr).toBeGreaterThan(0);
    for (const r of rebuilt) expect(r.zstd).toBe('wasm');

    // A depot whose stored chunks were altered: its bytes are refused, the package still arrives intact.
    const packs = join(D, 'store', 'chunks-v1');
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true }))
        e.isDirectory()
          ? walk(join(d, e.name))
          : /^pack-\d+\.dat$/.test(e.name) && files.push(join(d, e.name));
    };
    walk(packs);
    const saved = files.map((f) => [f, readFileSync(f)] as const);
    try {
      for (const [f, b] of saved) {
        const bad = Buffer.from(b);
        for (let i = 64; i < bad.length; i += 4096) bad[i] = (bad[i] as number) ^ 0xff;
        writeFileSync(f, bad);
      }
      const out3 = join(tmp.dir, `out3-${tag}.bin`);
      const f3 = run(['fetch', '--dir', where(A), 'tool@1', '--out', where(out3), '--json']);
      expect(f3.status, f3.stderr).toBe(0);
      expect(sha(readFileSync(out3))).toBe(sha(v1));
      // Without the tampering the depot, ranked first, serves every chunk: the master served them now.
      expect(f3.json.source).toContain('master');
    } finally {
      for (const [f, b] of saved) writeFileSync(f, b);
    }
  }

  describe('Linux executable', () => {
    const run = (args: string[]): Run => {
      const r = spawnSync(linuxExe, args, {
        encoding: 'utf8',
        cwd: tmp.dir,
        timeout: 120_000,
        env: { PATH: '/usr/bin:/bin' },
      });
      return parse(r.status, r.stdout, r.stderr, args);
    };

    it('runs without node_modules: version, BLAKE3 and zstd through WebAssembly', () => {
      const r = run(['version', '--json']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.json).toMatchObject({
        version: '0.1.0',
        node: 'v20.20.2',
        platform: 'linux-x64',
        blake3: 'wasm',
        zstd: 'wasm',
      });
    });

    it('the same build twice gives the same bytes', async () => {
      expect(await again).toBe(build.info.files['depotsync-agent-linux-x64']?.sha256);
      // The service host too: compiled again into another folder (no timestamp, no build path inside).
      const { buildServiceHost } = (await import(join(ROOT, 'scripts', 'package-agent.mjs'))) as {
        buildServiceHost: (outDir: string) => string;
      };
      const hostDir = join(tmp.dir, 'host-again');
      mkdirSync(hostDir);
      expect(sha(readFileSync(buildServiceHost(hostDir)))).toBe(
        build.info.files['depotsync-agent-service.exe']?.sha256,
      );
    }, 120_000);

    it('refuses an output path longer than the file system holds, before fetching', () => {
      const r = run([
        'fetch',
        '--dir',
        join(tmp.dir, 'none'),
        'tool',
        '--out',
        join(tmp.dir, 'x'.repeat(300)),
      ]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/output path .* has a name of 300 bytes/);
    });

    it('refuses the Windows service commands', () => {
      const r = run(['service', 'install', '--dir', join(tmp.dir, 'none')]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/service install: Windows services only.*systemd/);
    });

    it('refuses a key file readable by group or others', () => {
      const A = join(tmp.dir, 'A-loose');
      runJson([
        'agent',
        'init',
        '--dir',
        A,
        '--master',
        masterUrl,
        '--fingerprint',
        fp,
        '--token',
        token(),
        '--name',
        'pc-loose',
      ]);
      chmodSync(join(A, 'keys', 'agent-key.pem'), 0o644);
      const r = run(['depots', '--dir', A]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /agent-key\.pem can be read by group, others: refusing to use it; make it private.*chmod 600/,
      );
    });

    it('enrolls, fetches byte for byte, resumes after a kill, refuses a tampered depot', async () => {
      // The bundle stubs no native addon: the agent's module graph needs none.
      expect(build.pendingNative).toEqual([]);
      await fullFlow(
        run,
        (a) => [linuxExe, ...a],
        (p) => p,
        'linux',
      );
    }, 180_000);
  });

  describe.runIf(WINE !== undefined)('Windows executable under wine', () => {
    const prefix = join(CACHE, 'wineprefix');
    const env = {
      ...process.env,
      WINEPREFIX: prefix,
      WINEDEBUG: '-all',
      NODE_SKIP_PLATFORM_CHECK: '1',
      // No Mono or Gecko installers when the prefix is first made (they would ask, or fetch from the internet).
      WINEDLLOVERRIDES: 'mscoree,mshtml=',
    };
    let winExe: string;
    const where = (p: string) => `Z:${p.replaceAll('/', '\\')}`;
    /** Seconds each wine command took, the slowest reported when a test fails on time. */
    const timings: Array<[number, string]> = [];
    /** A wine command, its output through files: wine's console makes node fail on a piped stdout (EBADF). */
    const wine = (args: string[], timeout = 120_000) => {
      const o = join(tmp.dir, 'wine.out');
      const e = join(tmp.dir, 'wine.err');
      const [fo, fe] = [openSync(o, 'w'), openSync(e, 'w')];
      const t0 = performance.now();
      try {
        const r = spawnSync(WINE as string, args, { stdio: ['ignore', fo, fe], env, timeout });
        return { status: r.status, stdout: readFileSync(o, 'utf8'), stderr: readFileSync(e, 'utf8') };
      } finally {
        closeSync(fo);
        closeSync(fe);
        timings.push([(performance.now() - t0) / 1000, args.slice(0, 3).join(' ')]);
      }
    };
    const run = (args: string[]): Run => {
      const r = wine([winExe, ...args]);
      return parse(r.status, r.stdout, r.stderr, args);
    };
    beforeAll(() => {
      const clean = join(tmp.dir, 'winbin');
      mkdirSync(clean);
      winExe = join(clean, 'depotsync-agent.exe');
      copyFileSync(build.windows, winExe);
      copyFileSync(build.host, join(clean, 'depotsync-agent-service.exe'));
      mkdirSync(prefix, { recursive: true });
      // One wineserver for the whole file (ended in afterAll): each wine command joins it instead of
      // starting a server, and wine's services, of its own.
      spawnSync('wineserver', ['-p', '600'], { env, stdio: 'ignore' });
      // Windows 10, as node.exe wants: a service's child inherits the service manager's environment, which
      // has no NODE_SKIP_PLATFORM_CHECK. Made once per prefix (the first run also creates the prefix).
      const version = wine(['reg', 'query', 'HKCU\\Software\\Wine', '/v', 'Version'], 300_000);
      if (!version.stdout.includes('win10')) {
        wine(['winecfg', '/v', 'win10'], 300_000);
        // A prefix made just now: wine's service manager started while the prefix was being filled in,
        // and a service's child could not start icacls.exe in it. A new session from the finished prefix.
        spawnSync('wineserver', ['-k'], { env, stdio: 'ignore' });
        spawnSync('wineserver', ['-w'], { env, stdio: 'ignore', timeout: 60_000 });
        spawnSync('wineserver', ['-p', '600'], { env, stdio: 'ignore' });
      }
    }, 600_000);
    const serviceName = 'depotsync-agent-e2e';
    afterAll(() => {
      // A service test that failed half-way leaves its service installed, and maybe running.
      if (run(['service', 'status', '--name', serviceName]).status === 0)
        run(['service', 'uninstall', '--name', serviceName]);
      // The server and wine's own services (services.exe, explorer.exe …) end with the file.
      spawnSync('wineserver', ['-k'], { env, stdio: 'ignore' });
      const slow = timings.filter(([t]) => t > 10).map(([t, c]) => `${t.toFixed(1)} s ${c}`);
      if (slow.length > 0) process.stderr.write(`agent-exe: wine commands over 10 s: ${slow.join('; ')}\n`);
    });

    it('runs: version, win32, BLAKE3 and zstd through WebAssembly', () => {
      const r = run(['version', '--json']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.json).toMatchObject({
        version: '0.1.0',
        node: 'v20.20.2',
        platform: 'win32-x64',
        blake3: 'wasm',
        zstd: 'wasm',
      });
    }, 120_000);

    it('keeps its directory under ProgramData and refuses reserved, drive-relative and long output paths', () => {
      const d = run(['depots']);
      expect(d.stderr).toMatch(/C:\\ProgramData\\depotsync\\agent\\agent\.json: not an agent directory/);
      const con = run(['fetch', 'tool', '--out', 'C:\\Packages\\CON']);
      expect(con.status).toBe(1);
      expect(con.stderr).toMatch(/"CON", a name Windows reserves for a device/);
      const drive = run(['fetch', 'tool', '--out', 'C:Packages']);
      expect(drive.stderr).toMatch(/relative to the current folder of a drive/);
      const long = run(['fetch', 'tool', '--out', `C:\\${'p'.repeat(300)}`]);
      expect(long.stderr).toMatch(/303 characters long; Windows programs are limited to 259/);
    }, 120_000);

    /** An agent directory enrolled through the Windows executable. */
    const enrollWine = (tag: string) => {
      const A = join(tmp.dir, `A-${tag}`);
      const init = run(
        ['init', '--dir', where(A), '--master', masterUrl, '--fingerprint', fp].concat([
          '--token',
          token(),
          '--name',
          `pc-${tag}`,
          '--depot',
          depotUrl,
          '--json',
        ]),
      );
      expect(init.status, init.stderr).toBe(0);
      return A;
    };

    /** Linux pids of wine processes whose Windows command line holds every one of `parts`. */
    const winePids = (...parts: string[]) =>
      spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((l) => parts.every((p) => l.includes(p)))
        .map((l) => Number(l.trim().split(/\s+/)[0]));

    it('runs as a service: the host reaches RUNNING, the agent works, restarts after a crash, stops on request', async () => {
      const name = serviceName;
      const A = enrollWine('svc');
      const log = join(prefix, 'drive_c', 'ProgramData', 'depotsync', `${name}.log`);
      run(['service', 'uninstall', '--name', name]); // left over by an interrupted run, if any
      rmSync(log, { force: true });
      const noHost = run([
        'service',
        'install',
        '--name',
        name,
        '--dir',
        where(A),
        '--host',
        'C:\\none\\h.exe',
      ]);
      expect(noHost.status).toBe(1);
      expect(noHost.stderr).toMatch(/the service host C:\\none\\h\.exe is missing/);
      const i = run(['service', 'install', '--name', name, '--dir', where(A), '--interval', '10', '--json']);
      expect(i.status, i.stderr).toBe(0);
      expect(i.json).toMatchObject({ service: name, done: ['create', 'description', 'failure'] });
      const key = `HKLM\\System\\CurrentControlSet\\Services\\${name}`;
      const reg = wine(['reg', 'query', key]).stdout;
      expect(reg).toMatch(
        /ImagePath\s+REG_(EXPAND_)?SZ\s+.*depotsync-agent-service\.exe --agent .*depotsync-agent\.exe --log /,
      );
      expect(reg).toMatch(/ -- service run --dir Z:.*A-svc --interval 10/);
      expect(reg).toMatch(/Start\s+REG_DWORD\s+0x2/);
      expect(run(['service', 'status', '--name', name, '--json']).json).toEqual({
        service: name,
        state: 'STOPPED',
      });

      // Started as an administrator would (sc.exe start): the host answers the service manager.
      const started = wine(['sc', 'start', name]);
      expect(started.stdout, started.stderr).toMatch(/STATE\s+:\s+\d+\s+(START_PENDING|RUNNING)/);
      await until('the service to run', () =>
        run(['service', 'status', '--name', name, '--json']).json?.state === 'RUNNING' ? true : undefined,
      );
      // The agent works: it refreshed the signed depot directory and probed the depot over mutual TLS.
      const checked = () =>
        (existsSync(log) ? readFileSync(log, 'utf8') : '')
          .split(/\r?\n/)
          .filter((l) => l.includes('"agent service: checked"'))
          .map(
            (l) => JSON.parse(l) as { sources: Array<{ url: string; rttMs: number | null }>; pid: number },
          );
      const first = await until('the agent to finish a round', () => checked()[0], { timeoutMs: 60_000 });
      expect(first.sources.find((x) => x.url === depotUrl)?.rttMs, readFileSync(log, 'utf8')).toEqual(
        expect.any(Number),
      );
      const agentPids = winePids('depotsync-agent.exe service run', 'A-svc');
      expect(agentPids).toHaveLength(1);
      expect(winePids('depotsync-agent-service.exe', name)).toHaveLength(1);

      // The agent killed: the host starts it again (1 s back-off) and the service stays RUNNING.
      process.kill(agentPids[0] as number, 'SIGKILL');
      await until('the agent to be started again', () => (checked().length >= 2 ? true : undefined), {
        timeoutMs: 60_000,
      });
      expect(readFileSync(log, 'utf8')).toMatch(
        /the agent exited with code \d+: starting it again in 1000 ms/,
      );
      expect(run(['service', 'status', '--name', name, '--json']).json?.state).toBe('RUNNING');
      const second = winePids('depotsync-agent.exe service run', 'A-svc');
      expect(second).toHaveLength(1);
      expect(second[0]).not.toBe(agentPids[0]);

      // Uninstall: stop (the agent ends its loop on the stop file, exit code 0), then delete.
      const u = run(['service', 'uninstall', '--name', name, '--json']);
      expect(u.status, u.stderr).toBe(0);
      expect(u.json).toEqual({ service: name, done: ['stop', 'delete'] });
      const text = readFileSync(log, 'utf8');
      expect(text).toMatch(/stopping: asked the agent to end/);
      expect(text).toMatch(/"agent service: stopped"/);
      expect(text).toMatch(/service stopped \(agent exit code 0\)/);
      expect(winePids('depotsync-agent.exe service run', 'A-svc')).toEqual([]);
      expect(winePids('depotsync-agent-service.exe', name)).toEqual([]);
      expect(wine(['reg', 'query', key]).status).not.toBe(0);
      const gone = run(['service', 'status', '--name', name]);
      expect(gone.status).toBe(1);
      expect(gone.stderr).toMatch(/service depotsync-agent-e2e is not installed/);
    }, 240_000);

    it('the agent dies with its service host (job object), leaving no agent behind', async () => {
      const name = `${serviceName}-kill`;
      run(['service', 'uninstall', '--name', name]);
      const dir = 'C:\\ProgramData\\depotsync\\none';
      const i = run(['service', 'install', '--name', name, '--dir', dir, '--interval', '10', '--json']);
      expect(i.status, i.stderr).toBe(0);
      try {
        const log = join(prefix, 'drive_c', 'ProgramData', 'depotsync', `${name}.log`);
        rmSync(log, { force: true });
        wine(['sc', 'start', name]);
        // Running, not only created: the host makes it suspended, puts it in its job, then lets it run.
        await until('the agent to start', () =>
          existsSync(log) && readFileSync(log, 'utf8').includes('"agent service: started"')
            ? true
            : undefined,
        );
        const agent = winePids('depotsync-agent.exe service run', dir)[0];
        expect(agent).toBeDefined();
        const host = winePids('depotsync-agent-service.exe', name);
        expect(host).toHaveLength(1);
        process.kill(host[0] as number, 'SIGKILL');
        await until('the agent to end with its host', () =>
          winePids('depotsync-agent.exe service run', dir).includes(agent) ? undefined : true,
        );
      } finally {
        // wine's service manager does not notice that the host died (the service stays RUNNING, so
        // `service uninstall` would wait for a stop that never comes): removed directly.
        wine(['sc', 'delete', name]);
      }
    }, 120_000);

    it('runs verified installers: an .exe itself, an .msi through msiexec, --exec through cmd.exe; exit codes reported', () => {
      const A = enrollWine('inst');
      const dir = join(tmp.dir, 'inst dir');
      mkdirSync(dir);
      // The .exe, with its arguments; 3010 is Windows Installer's "installed, restart needed".
      const exe = run(
        ['fetch', '--dir', where(A), 'setup@1', '--out', where(join(dir, 'setup.exe'))].concat([
          '--install',
          '--install-args',
          '/S /code=3010',
          '--json',
        ]),
      );
      expect(exe.json, exe.stderr).toMatchObject({ name: 'setup', exitCode: 3010, rebootRequired: true });
      // wine passes the low byte of a Windows exit code on to Linux.
      expect(exe.status).toBe(3010 & 0xff);
      const ran = readFileSync(join(dir, 'installed.txt'), 'utf8');
      expect(ran).toContain(`cmdline="${where(join(dir, 'setup.exe'))}" /S /code=3010`);

      // A real MSI, installed unattended, then removed again (the prefix is kept between runs).
      const msiOut = where(join(dir, 'tool.msi'));
      const msi = run(['fetch', '--dir', where(A), 'tool-msi@1', '--out', msiOut, '--install', '--json']);
      expect(msi.status, msi.stderr).toBe(0);
      expect(msi.json).toMatchObject({ exitCode: 0, rebootRequired: false });
      const installed = join(prefix, 'drive_c', 'Program Files', MSI_FOLDER, 'payload.txt');
      expect(readFileSync(installed, 'utf8')).toBe(MSI_PAYLOAD);
      expect(wine(['msiexec', '/x', msiOut, '/qn']).status).toBe(0);
      expect(existsSync(installed)).toBe(false);

      // An .msi Windows Installer cannot open: its error code, not 0.
      const bad = run(
        ['fetch', '--dir', where(A), 'broken-msi@1', '--out', where(join(dir, 'broken.msi'))].concat([
          '--install',
          '--json',
        ]),
      );
      expect(bad.json, bad.stderr).toMatchObject({ name: 'broken-msi' });
      expect(bad.json.exitCode).toBeGreaterThanOrEqual(1600);
      expect(bad.status).toBe(bad.json.exitCode & 0xff);

      // --exec: cmd.exe runs the command with the verified path appended, quoted.
      const tool = join(tmp.dir, 'exec tool');
      mkdirSync(tool);
      copyFileSync(join(dir, 'setup.exe'), join(tool, 'marker.exe'));
      const out = where(join(dir, 'payload.bin'));
      const ex = run(
        ['fetch', '--dir', where(A), 'tool@1', '--out', out, '--json'].concat([
          '--exec',
          `"${where(join(tool, 'marker.exe'))}" /code=5 first`,
        ]),
      );
      expect(ex.json, ex.stderr).toMatchObject({ exitCode: 5 });
      expect(readFileSync(join(tool, 'installed.txt'), 'utf8')).toContain(`/code=5 first "${out}"`);
      expect(readFileSync(join(tool, 'installed.txt'), 'utf8')).toContain(`DEPOTSYNC_PATH=${out}`);

      // Refused before anything is fetched: not an installer's name, or both options.
      const zip = run([
        'fetch',
        '--dir',
        where(A),
        'tool@1',
        '--out',
        where(join(dir, 't.zip')),
        '--install',
      ]);
      expect(zip.status).toBe(2);
      expect(zip.stderr).toMatch(/is not an \.exe or \.msi file/);
      expect(existsSync(join(dir, 't.zip'))).toBe(false);
      const both = run(['fetch', '--dir', where(A), 'tool@1', '--out', out, '--install', '--exec', 'x']);
      expect(both.stderr).toMatch(/--exec and --install exclude each other/);
    }, 240_000);

    it('enrolls, fetches byte for byte, resumes after a kill, refuses a tampered depot', async () => {
      // The bundle stubs no native addon: the agent's module graph needs none.
      expect(build.pendingNative).toEqual([]);
      await fullFlow(run, (a) => [WINE as string, winExe, ...a], where, 'wine');
    }, 300_000);
  });
});
