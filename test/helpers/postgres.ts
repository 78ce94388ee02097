import { execFile } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './slapd.js';

const run = promisify(execFile);

/**
 * A throw-away PostgreSQL cluster for tests (Debian `postgresql`, installed by scripts/system-deps.sh):
 * initdb + pg_ctl in a temporary folder, listening on 127.0.0.1 on a free port, password (SCRAM)
 * authentication with a known superuser password so wrong credentials can be tested. The package's own
 * service is not used. Durability is switched off (fsync=off): the data is thrown away anyway.
 *
 * Tests run as root and PostgreSQL refuses to run as root, so the server runs as the `postgres` user
 * (runuser) and owns the folder.
 */
export interface PgCluster {
  host: string;
  port: number;
  user: string;
  password: string;
  dir: string;
  /** postgres://user:password@127.0.0.1:port/name */
  url(database?: string, o?: { user?: string; password?: string }): string;
  /** A fresh, empty database; returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** Run SQL as the superuser on the `postgres` maintenance database (or `database`). */
  query(sql: string, database?: string): Promise<pg.QueryResult>;
  /** pg_ctl restart -m fast: every connection is cut, the server comes back on the same port. */
  restart(): Promise<void>;
  /** pg_ctl stop -m fast (start() brings it back). */
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  /** Stop the server and remove the folder. */
  stop(): Promise<void>;
}

export const PG_PASSWORD = 'pg-test-secret';

/** The newest PostgreSQL's bin folder under /usr/lib/postgresql, or undefined. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

/** Run a PostgreSQL binary, as the `postgres` user when we are root. */
async function asPostgres(bin: string, args: string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  try {
    const { stdout } = await run(cmd, argv, { encoding: 'utf8', timeout: 60_000 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

let counter = 0;

export async function startPostgres(): Promise<PgCluster> {
  const bin = postgresBinDir();
  if (!bin)
    throw new Error('PostgreSQL is not installed (scripts/system-deps.sh installs the postgresql package)');
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-pg-'));
  const data = join(dir, 'data');
  const user = 'postgres';
  const password = PG_PASSWORD;
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, password + '\n', { mode: 0o600 });
  if (process.getuid?.() === 0) {
    const { uid, gid } = postgresIds();
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  await asPostgres(join(bin, 'initdb'), [
    '-D',
    data,
    '-U',
    user,
    '--pwfile',
    pwfile,
    '--auth',
    'scram-sha-256',
    '-E',
    'UTF8',
    '--locale',
    'C',
    '--no-sync',
  ]);
  const port = await freePort();
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'shared_buffers = 16MB',
      'max_connections = 100',
      '',
    ].join('\n'),
    { flag: 'a' },
  );
  const log = join(dir, 'server.log');
  const pgctl = (args: string[]) => asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-l', log, '-w', ...args]);
  const started = async () => {
    try {
      await pgctl(['start']);
    } catch (e) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : '';
      throw new Error(`${(e as Error).message}\n${tail}`);
    }
  };
  await started();
  const url = (database = 'postgres', o: { user?: string; password?: string } = {}) =>
    `postgres://${encodeURIComponent(o.user ?? user)}:${encodeURIComponent(o.password ?? password)}@127.0.0.1:${port}/${database}`;
  const query = async (sql: string, database = 'postgres') => {
    const c = new pg.Client({ connectionString: url(database) });
    await c.connect();
    try {
      return await c.query(sql);
    } finally {
      await c.end();
    }
  };
  let running = true;
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    dir,
    url,
    query,
    async createDatabase(prefix = 'test') {
      const name = `${prefix}_${process.pid}_${++counter}`;
      await query(`CREATE DATABASE ${name}`);
      return url(name);
    },
    async restart() {
      await pgctl(['restart', '-m', 'fast']);
    },
    async stopServer() {
      await pgctl(['stop', '-m', 'fast']);
      running = false;
    },
    async startServer() {
      await started();
      running = true;
    },
    async stop() {
      try {
        if (running) await pgctl(['stop', '-m', 'immediate']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user (the postgresql package creates it)');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}
