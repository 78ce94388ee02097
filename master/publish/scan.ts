import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { recordAudit } from '../db/audit.js';
import type { MasterContext } from '../context.js';
import type { SourceFile } from './collect.js';
import { SCAN_DEFAULTS, type ScanSettings } from './scan-settings.js';

/**
 * Publishing safety: an optional scan command (an antivirus scanner, a policy check)
 * that every publish runs against the content before it enters the catalog: the CLI, the operator API
 * upload and the drop folder all go through publish(), which calls this.
 *
 *   1. The command is an argv array from master.json (`publishScanCommand`), run WITHOUT a shell, with the
 *      publish source (the file, the uploaded spool file or the drop folder) appended as its last argument:
 *      blocks command injection through a package or file name.
 *   2. Exit 0 passes. Any other exit, a signal, a command that cannot be started, or one that runs longer
 *      than `publishScanTimeoutMs` (then its whole process group is killed) refuses the publish:
 *      fail closed, never "no answer = clean".
 *   3. Its output (stdout and stderr, the last `maxOutputBytes`) goes into the error and into the audit
 *      log (`publish.refused`); memory stays bounded whatever the scanner prints.
 *   4. The files are stamped (device, inode, size, mtime, ctime) before the scan and checked again after
 *      they were read into the store: blocks swapping the content between the scan and the ingest
 *      (a file changed in between refuses the publish).
 * A refused publish adds nothing to the catalog; chunks it had already stored are unreferenced and left
 * to garbage collection.
 */
export interface ScanOutcome {
  passed: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Set when the command could not be started (ENOENT, EACCES). */
  startError?: string;
  /** The end of stdout and stderr, interleaved as they arrived (at most maxOutputBytes, UTF-8). */
  output: string;
  /** True when earlier output was dropped to keep only the end. */
  truncated: boolean;
  durationMs: number;
}

/** Keeps the last `max` bytes of everything written to it. */
class TailBuffer {
  private parts: Buffer[] = [];
  private bytes = 0;
  dropped = false;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.parts.push(b);
    this.bytes += b.length;
    while (this.bytes > this.max && this.parts.length > 0) {
      const first = this.parts[0]!;
      const excess = this.bytes - this.max;
      if (first.length <= excess) {
        this.parts.shift();
        this.bytes -= first.length;
      } else {
        this.parts[0] = first.subarray(excess);
        this.bytes -= excess;
      }
      this.dropped = true;
    }
  }
  text(): string {
    // A cut through a multi-byte character at the start decodes as U+FFFD: harmless.
    return Buffer.concat(this.parts, this.bytes).toString('utf8');
  }
}

/** Run the scan command on `paths` (appended to its argv). Never throws for the scanner's own failures. */
export function runScan(
  settings: ScanSettings,
  paths: readonly string[],
  log?: Logger,
): Promise<ScanOutcome> {
  const maxOutput = settings.maxOutputBytes ?? SCAN_DEFAULTS.maxOutputBytes;
  const graceMs = settings.killGraceMs ?? SCAN_DEFAULTS.killGraceMs;
  const [program, ...args] = settings.command as [string, ...string[]];
  const started = performance.now();
  const tail = new TailBuffer(maxOutput);
  return new Promise<ScanOutcome>((resolve) => {
    let timedOut = false;
    let done = false;
    let startError: string | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    // detached: the scanner leads its own process group, so a timeout kills its children too (a
    // wrapper script's `sleep` would otherwise keep the pipes open).
    const child = spawn(program, [...args, ...paths], {
      shell: false,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      const outcome: ScanOutcome = {
        passed: !timedOut && startError === undefined && exit?.code === 0,
        exitCode: exit?.code ?? null,
        signal: exit?.signal ?? null,
        timedOut,
        output: tail.text(),
        truncated: tail.dropped,
        durationMs: Math.round(performance.now() - started),
      };
      if (startError !== undefined) outcome.startError = startError;
      resolve(outcome);
    };
    let graceTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
      // Pipes held open by a process that left the group: stop waiting for them after a grace period.
      graceTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish();
      }, graceMs);
      graceTimer.unref();
    }, settings.timeoutMs);
    child.stdout?.on('data', (b: Buffer) => tail.push(b));
    child.stderr?.on('data', (b: Buffer) => tail.push(b));
    child.on('error', (e) => {
      startError = (e as NodeJS.ErrnoException).code ?? e.message;
      log?.info({ command: program, err: e.message }, 'scan command could not be started');
      finish();
    });
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // The scanner's children may still hold its pipes: reap the group once the scanner is gone.
      if (timedOut) killGroup(child.pid);
    });
    child.on('close', (code, signal) => {
      exit ??= { code, signal };
      finish();
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** One line for an error message: control characters and line breaks flattened. */
export function flattenOutput(output: string): string {
  return output
    .replace(/\r?\n/g, ' | ')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ' ')
    .replace(/( \| )+$/, '')
    .trim();
}

function refusalReason(o: ScanOutcome, settings: ScanSettings): string {
  if (o.startError !== undefined)
    return `the scan command ${settings.command[0]} could not be started (${o.startError})`;
  if (o.timedOut)
    return `the scan command did not finish within ${settings.timeoutMs} ms (publishScanTimeoutMs) and was killed`;
  if (o.signal) return `the scan command was killed by ${o.signal}`;
  return `the scan command exited with status ${o.exitCode}`;
}

/** A file as it was when it was scanned: any write, replace or truncation changes one of these. */
interface Stamp {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

async function stampOf(path: string): Promise<Stamp> {
  try {
    const s = await stat(path);
    return { dev: s.dev, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
  } catch (e) {
    throw fromSystemError(e, `publish source ${path}`);
  }
}

export interface ScannedSource {
  /** Call after the files were read into the store: refuses when one changed since the scan. */
  assertUnchanged(): Promise<void>;
}

const NOTHING_TO_CHECK: ScannedSource = { assertUnchanged: async () => undefined };

/**
 * Scan a publish source (no-op without a configured scan command). Refuses with a 'forbidden' error
 * naming the package, the reason and the scanner's output, after writing `publish.refused` to the audit
 * log; on success the returned handle re-checks the files after the ingest (step 4).
 */
export async function scanPublishSource(
  ctx: MasterContext,
  input: {
    name: string;
    version: string;
    path: string;
    files: readonly SourceFile[];
    actor: string;
    address?: string | undefined;
  },
): Promise<ScannedSource> {
  const command = ctx.config.publishScanCommand;
  if (!command) return NOTHING_TO_CHECK;
  const settings: ScanSettings = { command, timeoutMs: ctx.config.publishScanTimeoutMs };
  const what = `publish ${input.name}@${input.version}`;
  const log = ctx.log.child({ component: 'master.scan' });
  const before = await Promise.all(input.files.map((f) => stampOf(f.absPath)));
  const outcome = await runScan(settings, [input.path], log);
  if (!outcome.passed) {
    const reason = refusalReason(outcome, settings);
    await recordAudit(ctx.db, {
      actor: input.actor,
      action: 'publish.refused',
      target: `${input.name}@${input.version}`,
      detail: {
        reason,
        command: settings.command,
        exitCode: outcome.exitCode,
        signal: outcome.signal,
        timedOut: outcome.timedOut,
        output: outcome.output,
        outputTruncated: outcome.truncated,
        durationMs: outcome.durationMs,
      },
      ...(input.address ? { address: input.address } : {}),
    });
    // info, not warn: the caller gets the error and the audit log keeps it; a one-shot CLI prints one line.
    log.info(
      {
        name: input.name,
        version: input.version,
        reason,
        exitCode: outcome.exitCode,
        timedOut: outcome.timedOut,
        output: outcome.output,
      },
      'publish refused by the scan command',
    );
    const shown = flattenOutput(outcome.output);
    throw new DepotsyncError(
      'forbidden',
      `${what} refused: ${reason}${shown ? `; scanner output${outcome.truncated ? ' (end)' : ''}: ${shown}` : ''}`,
      {
        hint:
          outcome.startError !== undefined || outcome.timedOut
            ? 'check publishScanCommand and publishScanTimeoutMs in master.json; nothing was published'
            : 'nothing was published; remove what the scanner found and publish again',
      },
    );
  }
  log.info({ name: input.name, version: input.version, durationMs: outcome.durationMs }, 'scan passed');
  return {
    async assertUnchanged() {
      const after = await Promise.all(input.files.map((f) => stampOf(f.absPath)));
      for (let i = 0; i < after.length; i++) {
        const a = before[i]!;
        const b = after[i]!;
        if (
          a.dev !== b.dev ||
          a.ino !== b.ino ||
          a.size !== b.size ||
          a.mtimeMs !== b.mtimeMs ||
          a.ctimeMs !== b.ctimeMs
        ) {
          throw new DepotsyncError(
            'conflict',
            `${what}: ${input.files[i]!.path} changed after it was scanned`,
            {
              hint: 'wait until the file is completely written, then publish again; nothing was published',
            },
          );
        }
      }
    },
  };
}
