import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { DepotsyncError } from '../src/errors.js';

/**
 * `agent fetch --exec CMD`: run CMD with the verified path as its last argument, only ever after the
 * fetch verified and moved the package into place (the caller guarantees the order; nothing here runs
 * on a failed fetch). The path goes in as the shell's positional parameter `$1`, never pasted into the
 * command text, so a path with spaces or shell characters cannot change what runs. The exit code
 * passes through; a signal becomes 128 + its number, as shells report it.
 */
export async function runAfterVerify(
  cmd: string,
  path: string,
  opts: { stdoutToStderr?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  if (cmd.trim() === '') throw new DepotsyncError('usage', '--exec: the command is empty');
  return new Promise<number>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', `${cmd} "$1"`, 'depotsync-exec', path], {
      stdio: ['inherit', opts.stdoutToStderr ? process.stderr : 'inherit', 'inherit'],
      env: { ...process.env, ...opts.env, DEPOTSYNC_PATH: path },
    });
    child.on('error', (e) =>
      reject(new DepotsyncError('io', `--exec ${cmd}: could not start (${e.message})`, { cause: e })),
    );
    child.on('exit', (code, signal) => {
      if (code !== null) resolve(code);
      else resolve(128 + ((signal && constants.signals[signal]) || 1));
    });
  });
}
