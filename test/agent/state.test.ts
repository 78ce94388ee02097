import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { FileAgentState } from '../../agent/state.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { expectError } from '../helpers/errors.js';
import { tempDir } from '../helpers/tmp.js';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function dir(): string {
  const t = tempDir('agent-state-');
  cleanups.push(t.cleanup);
  return t.dir;
}

function capturingLogger(): {
  log: ReturnType<typeof createLogger>;
  lines: () => Array<Record<string, unknown>>;
} {
  let text = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  return {
    log: createLogger({ level: 'info', destination }),
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** A state.sqlite as agents of earlier versions wrote it (their migration 1). */
function writeLegacy(path: string): void {
  const db = new Database(path);
  db.exec(`
    CREATE TABLE seen (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE sources (
      url TEXT PRIMARY KEY,
      rtt_ms INTEGER,
      probed_at_ms INTEGER NOT NULL DEFAULT 0,
      penalty_until_ms INTEGER NOT NULL DEFAULT 0,
      penalty_reason TEXT,
      failures INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    INSERT INTO seen VALUES ('generation', 41), ('root', 3);
    INSERT INTO sources VALUES ('https://depot-a:8443', 17, 1000, 5000, 'slow', 2);`);
  db.close();
}

describe('FileAgentState', () => {
  it('creates state.json at open (mode 0600) and never lowers a count', () => {
    const path = join(dir(), 'state.json');
    const s = FileAgentState.open(path, silentLogger());
    expect(existsSync(path)).toBe(true);
    expect(readdirSync(join(path, '..'))).toEqual(['state.json']); // no temporary file left
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600);
    s.raise('root', 2);
    s.raise('root', 1);
    expect(s.highest('root')).toBe(2);
    expect(() => s.raise('generation', -1)).toThrow(/not a count/);
    expect(() => s.raise('generation', 1.5)).toThrow(/not a count/);
  });

  it('two handles on one file do not lower each other (re-read and merge on every change)', () => {
    const path = join(dir(), 'state.json');
    const a = FileAgentState.open(path, silentLogger());
    const b = FileAgentState.open(path, silentLogger());
    a.raise('generation', 10);
    b.raise('root', 4); // b still remembers generation 0: the merge keeps a's 10
    b.penalize('https://x', 99, 'refused');
    a.recordProbe('https://x', 3.6, 50);
    const c = FileAgentState.open(path, silentLogger());
    expect(c.highest('generation')).toBe(10);
    expect(c.highest('root')).toBe(4);
    expect(c.health('https://x')).toMatchObject({
      rttMs: 4,
      probedAtMs: 50,
      penaltyUntilMs: 99,
      failures: 1,
    });
  });

  it('refuses a damaged or foreign file with a typed error and a hint', () => {
    const path = join(dir(), 'state.json');
    for (const [text, why] of [
      ['{"format":1,"seen":{"generation":1', /not JSON/],
      ['[]', /not a JSON object/],
      ['{"format":2,"seen":{"generation":1,"root":1},"sources":{}}', /format 2/],
      ['{"format":1,"seen":{"generation":-1,"root":1},"sources":{}}', /"seen"/],
      ['{"format":1,"seen":{"generation":1,"root":1},"sources":[]}', /"sources"/],
      [
        '{"format":1,"seen":{"generation":1,"root":1},"sources":{"https://a":{"rttMs":"fast"}}}',
        /malformed entry/,
      ],
    ] as const) {
      writeFileSync(path, text);
      expectError(() => FileAgentState.open(path, silentLogger()), 'corrupt', why);
    }
  });

  it('carries the SQLite state of an earlier version over once, and says so', () => {
    const d = dir();
    writeLegacy(join(d, 'state.sqlite'));
    const { log, lines } = capturingLogger();
    const s = FileAgentState.open(join(d, 'state.json'), log, { legacySqlite: join(d, 'state.sqlite') });
    expect(s.highest('generation')).toBe(41);
    expect(s.highest('root')).toBe(3);
    expect(s.health('https://depot-a:8443')).toEqual({
      url: 'https://depot-a:8443',
      rttMs: 17,
      probedAtMs: 1000,
      penaltyUntilMs: 5000,
      penaltyReason: 'slow',
      failures: 2,
    });
    expect(lines().some((l) => /carried over/.test(String(l['msg'])))).toBe(true);
    // Written to state.json: a second open reads it, not the old file.
    s.raise('generation', 42);
    const again = FileAgentState.open(join(d, 'state.json'), silentLogger(), {
      legacySqlite: join(d, 'state.sqlite'),
    });
    expect(again.highest('generation')).toBe(42);
  });

  it('an old state file it cannot read: fresh state and a warning, not a refusal', () => {
    const d = dir();
    writeFileSync(join(d, 'state.sqlite'), 'not a database at all, but long enough to be looked at');
    const { log, lines } = capturingLogger();
    const s = FileAgentState.open(join(d, 'state.json'), log, { legacySqlite: join(d, 'state.sqlite') });
    expect(s.highest('generation')).toBe(0);
    const warn = lines().find((l) => l['level'] === 40);
    expect(String(warn?.['msg'])).toMatch(/starting with fresh state/);
    expect(JSON.parse(readFileSync(join(d, 'state.json'), 'utf8'))).toMatchObject({ format: 1 });
  });

  it('a kill at any moment leaves a readable file holding at least every value a raise returned for', async () => {
    const d = dir();
    const path = join(d, 'state.json');
    const stateModule = fileURLToPath(new URL('../../dist/agent/state.js', import.meta.url));
    const logModule = fileURLToPath(new URL('../../dist/src/log.js', import.meta.url));
    const script = `
      const { FileAgentState } = await import(${JSON.stringify(stateModule)});
      const { silentLogger } = await import(${JSON.stringify(logModule)});
      const s = FileAgentState.open(${JSON.stringify(path)}, silentLogger());
      for (let g = s.highest('generation') + 1; ; g++) {
        s.raise('generation', g);
        s.recordProbe('https://depot-' + (g % 7) + ':8443', g % 100, g);
        process.stdout.write(g + '\\n');
      }`;
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let acknowledged = 0;
      let out = '';
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          const lines = out.split('\n');
          out = lines.pop() ?? '';
          for (const l of lines) acknowledged = Number(l);
          // Kill at a different depth each round, somewhere inside a write.
          if (acknowledged >= 20 + round * 13 && child.exitCode === null) child.kill('SIGKILL');
        });
        child.on('exit', () => resolve());
      });
      const s = FileAgentState.open(path, silentLogger());
      expect(s.highest('generation')).toBeGreaterThanOrEqual(acknowledged);
    }
  }, 60_000);
});
