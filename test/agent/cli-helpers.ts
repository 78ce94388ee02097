import { Writable } from 'node:stream';
import { parseCommandArgs } from '../../src/command/args.js';
import type { Command, CommandResult } from '../../src/command/command.js';
import { silentLogger } from '../../src/log.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

/** Run one Command in-process as `depotsync` would (flags parsed strictly), capturing its output. */
export async function runCommand(
  cmd: Command,
  argv: string[],
): Promise<{ result: CommandResult; stdout: string; stderr: string }> {
  const { values, positionals } = parseCommandArgs(cmd, argv);
  const stdout = new Capture();
  const stderr = new Capture();
  const result = await cmd.run({
    values,
    positionals,
    json: values.json === true,
    log: silentLogger(),
    stdout,
    stderr,
  });
  return { result, stdout: stdout.text, stderr: stderr.text };
}

export function find(commands: Command[], ...path: string[]): Command {
  const c = commands.find((x) => x.path.join(' ') === path.join(' '));
  if (!c) throw new Error(`no command ${path.join(' ')}`);
  return c;
}
