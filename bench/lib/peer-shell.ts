import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * A shell that runs a benchmark's peer commands (cp, sync, tar …) for it, started once while the
 * benchmark process is still small.
 *
 * Why: `execFileSync` forks this process. After a fork every private page of the parent is
 * copy-on-write, and the parent's next write to each page takes a fault, even once the child has
 * exec'd. An ingest timed right after a `cp` spawned this way took ~43,000 such faults (its read
 * blocks, 170 MiB) and 1.34-1.50 s, against 557 faults and 1.08 s without the spawn (spawning `true`
 * did the same as `cp`). A depotsync process does not fork between its reads; the benchmark should
 * not either. The shell forks instead of us, and it is tiny.
 */
export class PeerShell {
  private readonly sh: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;

  constructor() {
    this.sh = spawn('sh', [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.sh.stderr.pipe(process.stderr);
    this.lines = createInterface({ input: this.sh.stdout })[Symbol.asyncIterator]();
  }

  /** Run `command` (shell syntax) and wait for it; throws with the exit code if it fails. */
  async run(command: string): Promise<void> {
    this.sh.stdin.write(`${command} >/dev/null; echo "peer-shell-exit $?"\n`);
    for (;;) {
      const next = await this.lines.next();
      if (next.done) throw new Error(`peer shell ended while running: ${command}`);
      const m = /^peer-shell-exit (\d+)$/.exec(next.value);
      if (!m) continue;
      if (m[1] !== '0') throw new Error(`peer command failed with exit code ${m[1]}: ${command}`);
      return;
    }
  }

  close(): void {
    this.sh.stdin.end();
  }
}

/** Quote a path for the shell. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
