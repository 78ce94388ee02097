import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A real SMTP server for tests: aiosmtpd from Debian (test/helpers/smtp-server.py) on 127.0.0.1, with
 * STARTTLS required when `tls` is given, AUTH as alerts / "right horse battery"; what it receives is read
 * back from files in `dir`.
 */
const PYTHON = '/usr/bin/python3'; // Debian's, where python3-aiosmtpd is installed
const SCRIPT = join(import.meta.dirname, 'smtp-server.py');

export interface Smtp {
  port: number;
  out: string;
  messages(): { from: string; to: string[]; tls: boolean; user: string | false; data: string }[];
  auths(): { tls: boolean; ok: boolean; login: string }[];
  stop(): Promise<void>;
}

const jsonl = <T>(path: string): T[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as T)
    : [];

export async function startSmtp(dir: string, tls?: { cert: string; key: string }): Promise<Smtp> {
  const args = [SCRIPT, '--out', dir, '--user', 'alerts', '--password', 'right horse battery'];
  if (tls) args.push('--cert', tls.cert, '--key', tls.key);
  const child: ChildProcess = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`smtp-server.py exited ${code}: ${stderr}`)));
  });
  return {
    port,
    out: dir,
    // Quoted-printable soft line breaks and folded header lines joined, so tests can match whole lines.
    messages: () =>
      jsonl<ReturnType<Smtp['messages']>[number]>(join(dir, 'messages.jsonl')).map((m) => ({
        ...m,
        data: m.data.replace(/=\r\n/g, '').replace(/\r\n(?=[ \t])/g, ''),
      })),
    auths: () => jsonl(join(dir, 'auth.jsonl')),
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}
