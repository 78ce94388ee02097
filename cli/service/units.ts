import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DepotsyncError } from '../../src/errors.js';

export type ServiceRole = 'master' | 'depot';

export interface UnitOptions {
  role: ServiceRole;
  /** The role's folder (absolute once resolved). */
  dir: string;
  /** The system user the service runs as. */
  user: string;
  /**
   * `master serve --listen`; for a depot, depot.json's listen (only its port matters: below 1024 the unit
   * grants CAP_NET_BIND_SERVICE).
   */
  listen?: string | undefined;
  /** Absolute paths of node and bin/depotsync.js; defaults: this process's. */
  node?: string;
  cli?: string;
}

export const DEFAULT_SERVICE_USER = 'depotsync';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';

export function defaultUnitName(role: ServiceRole): string {
  return `depotsync-${role}.service`;
}

/** bin/depotsync.js of this installation (the built CLI runs from dist/cli/service). */
export function installedCli(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'bin', 'depotsync.js');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    dir = dirname(dir);
  }
  throw new DepotsyncError('internal', 'service: cannot find bin/depotsync.js above this module');
}

export function checkServiceRole(value: string | undefined): ServiceRole {
  if (value === 'master' || value === 'depot') return value;
  throw new DepotsyncError('usage', `service: --role must be master or depot, got ${JSON.stringify(value)}`);
}

/** A user name systemd and useradd both accept (and that needs no quoting in a unit). */
export function checkUserName(value: string): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(value))
    throw new DepotsyncError(
      'usage',
      `service: --user must be a system user name, got ${JSON.stringify(value)}`,
      {
        hint: 'lower-case letters, digits, _ and -, at most 32 characters',
      },
    );
  return value;
}

/** Paths in unit files: absolute, without characters a unit would need to escape. */
function unitPath(path: string, what: string): string {
  if (!isAbsolute(path) || !/^[\w./@+-]+$/.test(path))
    throw new DepotsyncError(
      'bad-input',
      `service: ${what} ${JSON.stringify(path)} must be an absolute path of letters, digits and ._-/@+`,
      { hint: 'systemd unit files would need escaping for other characters; choose a plainer folder' },
    );
  return path;
}

const HOME_TREES = ['/home', '/root', '/run/user'];

/**
 * The systemd unit of `master serve` or `depot serve`: a dedicated user, the file system read-only
 * except the role's folder (ProtectSystem=strict + ReadWritePaths), no privilege gain, a private /tmp,
 * restart on failure, SIGHUP for `systemctl reload` (docs/operations.md, "Services").
 */
export function serviceUnit(o: UnitOptions): string {
  const dir = unitPath(resolve(o.dir), '--dir');
  const node = unitPath(o.node ?? process.execPath, 'node');
  const cli = unitPath(o.cli ?? installedCli(), 'the CLI');
  const user = checkUserName(o.user);
  const listen = o.role === 'master' ? (o.listen ?? '127.0.0.1:8443') : o.listen;
  if (listen !== undefined && !/^[\w.:[\]-]+:\d{1,5}$/.test(listen))
    throw new DepotsyncError('usage', `service: --listen must be HOST:PORT, got ${JSON.stringify(listen)}`);
  const port = listen === undefined ? undefined : Number(listen.slice(listen.lastIndexOf(':') + 1));
  const underHome = HOME_TREES.some((h) => dir === h || dir.startsWith(`${h}/`));
  const stateDir = dir.startsWith('/var/lib/') ? dir.slice('/var/lib/'.length) : undefined;
  const exec = [
    node,
    cli,
    o.role,
    'serve',
    '--dir',
    dir,
    ...(o.role === 'master' ? ['--listen', listen] : []),
  ].join(' ');
  const lines = [
    '# Written by `depotsync service install`; `depotsync service check` verifies the folder it serves.',
    '[Unit]',
    `Description=depotsync ${o.role} (${dir})`,
    `Documentation=file://${join(dirname(dirname(cli)), 'docs', 'operations.md')}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `User=${user}`,
    `Group=${user}`,
    `ExecStart=${exec}`,
    // `systemctl reload`: SIGHUP reads the configuration again (log level, schedules, certificates).
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Restart=on-failure',
    'RestartSec=5s',
    // SIGTERM stops serving cleanly (the last sync or publish is finished or rolled back).
    'TimeoutStopSec=60s',
    'Environment=NODE_ENV=production',
    'UMask=0077',
    'LimitNOFILE=65536',
    // The state directory: systemd creates it owned by the user when it lies under /var/lib.
    ...(stateDir ? [`StateDirectory=${stateDir}`, 'StateDirectoryMode=0700'] : []),
    'ProtectSystem=strict',
    `ReadWritePaths=${dir}`,
    'NoNewPrivileges=yes',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    // A folder under a home tree must stay visible; elsewhere the homes are hidden.
    ...(underHome ? [] : ['ProtectHome=yes']),
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectControlGroups=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
    // A listener below port 1024 needs this one capability and no other.
    ...(port !== undefined && port < 1024
      ? ['AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE']
      : ['CapabilityBoundingSet=']),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}
