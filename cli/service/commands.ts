import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { optionalString, requireString } from '../../src/command/args.js';
import type { Command, CommandContext } from '../../src/command/command.js';
import { DepotsyncError } from '../../src/errors.js';
import { lookupUser, serviceCheck, type CheckItem } from './check.js';
import {
  checkServiceRole,
  checkUserName,
  DEFAULT_SERVICE_USER,
  DEFAULT_UNIT_DIR,
  defaultUnitName,
  serviceUnit,
  type ServiceRole,
} from './units.js';

const UNIT_MARK = '# Written by `depotsync service install`';

/** systemd is the init system here (not merely installed): the test sd_booted() makes. */
function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

function unitName(ctx: CommandContext, role: ServiceRole): string {
  const name = optionalString(ctx.values, 'unit-name') ?? defaultUnitName(role);
  if (!/^[\w@.-]+\.service$/.test(name))
    throw new DepotsyncError(
      'usage',
      `service: --unit-name must end in .service, got ${JSON.stringify(name)}`,
    );
  return name;
}

/** The role's settings as `serve` would read them: refuse to install a service for a folder that cannot serve. */
async function roleListen(
  role: ServiceRole,
  dir: string,
  listenFlag: string | undefined,
): Promise<string | undefined> {
  if (role === 'master') {
    const { loadMasterConfig } = await import('../../master/config.js');
    loadMasterConfig(join(dir, 'master.json'));
    return listenFlag;
  }
  const { loadDepotConfig } = await import('../../depot/config.js');
  return loadDepotConfig(join(dir, 'depot.json')).listen;
}

function walk(path: string, visit: (p: string) => void): void {
  visit(path);
  for (const e of readdirSync(path, { withFileTypes: true })) {
    const p = join(path, e.name);
    if (e.isDirectory()) walk(p, visit);
    else visit(p);
  }
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'pipe' });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new DepotsyncError(
      'io',
      `service: ${cmd} ${args.join(' ')} failed: ${err.stderr?.toString().trim() || err.message}`,
      {
        cause: e,
      },
    );
  }
}

async function install(ctx: CommandContext) {
  const role = checkServiceRole(optionalString(ctx.values, 'role'));
  const dir = resolve(requireString(ctx.values, 'dir', 'service install'));
  const user = checkUserName(optionalString(ctx.values, 'user') ?? DEFAULT_SERVICE_USER);
  const unitDir = resolve(optionalString(ctx.values, 'unit-dir') ?? DEFAULT_UNIT_DIR);
  const name = unitName(ctx, role);
  const dryRun = ctx.values['dry-run'] === true;
  const listen = await roleListen(role, dir, optionalString(ctx.values, 'listen'));
  const unit = serviceUnit({ role, dir, user, listen });
  const path = join(unitDir, name);
  const actions: string[] = [];
  if (!lookupUser(user))
    actions.push(
      `create the system user ${user} (useradd --system --home-dir ${dir} --shell /usr/sbin/nologin)`,
    );
  actions.push(`chown -R ${user}:${user} ${dir}; chmod 0700 ${dir}; key files 0600`);
  actions.push(`write ${path}`);
  const enable = unitDir === DEFAULT_UNIT_DIR && systemdRunning();
  actions.push(
    enable
      ? `systemctl daemon-reload; systemctl enable ${name}`
      : 'systemd is not running here: enable the unit yourself',
  );
  if (dryRun) {
    return {
      json: { dryRun: true, path, unit, actions },
      human: `# ${path}\n${unit}\n# would:\n${actions.map((a) => `#  - ${a}`).join('\n')}`,
    };
  }
  if (process.getuid?.() !== 0)
    throw new DepotsyncError(
      'forbidden',
      'service install: run as root (it creates a user, changes owners and writes the unit)',
      {
        hint: 'see what it would do with --dry-run',
      },
    );
  if (!lookupUser(user))
    run('useradd', [
      '--system',
      '--user-group',
      '--home-dir',
      dir,
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      user,
    ]);
  const account = lookupUser(user);
  if (!account) throw new DepotsyncError('internal', `service install: user ${user} missing after useradd`);
  walk(dir, (p) => lchownSync(p, account.uid, account.gid));
  chmodSync(dir, 0o700);
  for (const item of serviceCheck(role, dir, user))
    if (item.check === 'private file' && !item.ok)
      chmodSync(item.detail.slice(0, item.detail.indexOf(': ')), 0o600);
  mkdirSync(unitDir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, unit, { mode: 0o644 });
  renameSync(tmp, path);
  if (enable) {
    run('systemctl', ['daemon-reload']);
    run('systemctl', ['enable', name]);
  }
  const next = enable
    ? `systemctl start ${name}`
    : `systemctl daemon-reload && systemctl enable --now ${name}`;
  return {
    json: { path, user, unit: name, enabled: enable },
    human: `${path} written; ${dir} belongs to ${user}; start it with: ${next} (reload: systemctl reload ${name})`,
  };
}

async function uninstall(ctx: CommandContext) {
  const role = checkServiceRole(optionalString(ctx.values, 'role'));
  const unitDir = resolve(optionalString(ctx.values, 'unit-dir') ?? DEFAULT_UNIT_DIR);
  const name = unitName(ctx, role);
  const path = join(unitDir, name);
  if (!existsSync(path))
    throw new DepotsyncError('not-found', `service uninstall: no unit ${path}`, {
      hint: 'give --unit-dir and --unit-name as at install',
    });
  // Never remove a unit someone else wrote under the same name.
  if (!readFileSync(path, 'utf8').startsWith(UNIT_MARK))
    throw new DepotsyncError(
      'conflict',
      `service uninstall: ${path} was not written by depotsync service install; left alone`,
    );
  const managed = unitDir === DEFAULT_UNIT_DIR && systemdRunning();
  if (managed) run('systemctl', ['disable', '--now', name]);
  rmSync(path);
  if (managed) run('systemctl', ['daemon-reload']);
  return {
    json: { removed: path, stopped: managed },
    human: `${path} removed${managed ? ' (stopped and disabled)' : ''}; the folder and the user stay`,
  };
}

function check(ctx: CommandContext) {
  const role = checkServiceRole(optionalString(ctx.values, 'role'));
  const dir = resolve(requireString(ctx.values, 'dir', 'service check'));
  const user = checkUserName(optionalString(ctx.values, 'user') ?? DEFAULT_SERVICE_USER);
  const items: CheckItem[] = serviceCheck(role, dir, user);
  const ok = items.every((i) => i.ok);
  const lines = items.map(
    (i) => `${i.ok ? 'ok  ' : 'FAIL'} ${i.check}: ${i.detail}${i.hint ? ` (${i.hint})` : ''}`,
  );
  return {
    json: { ok, role, dir, user, checks: items },
    human: `${lines.join('\n')}\n${ok ? `${dir} is ready for the ${role} service of ${user}` : `${items.filter((i) => !i.ok).length} problem(s)`}`,
    exitCode: ok ? 0 : 1,
  };
}

const common = {
  role: { type: 'string' },
  user: { type: 'string' },
  'unit-dir': { type: 'string' },
  'unit-name': { type: 'string' },
} as const;

/** `depotsync service …`: systemd units for `master serve` and `depot serve` (docs/operations.md). */
export const serviceCommands: Command[] = [
  {
    path: ['service', 'install'],
    usage:
      'service install --role master|depot --dir DIR [--user depotsync] [--listen HOST:PORT] [--unit-dir /etc/systemd/system] [--unit-name N] [--dry-run]',
    summary:
      'write the systemd unit of master serve or depot serve, create its system user and give it the folder; --dry-run prints the unit',
    options: {
      ...common,
      dir: { type: 'string' },
      listen: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
    run: install,
  },
  {
    path: ['service', 'uninstall'],
    usage: 'service uninstall --role master|depot [--unit-dir DIR] [--unit-name N]',
    summary: 'stop, disable and remove the unit `service install` wrote (the folder and the user stay)',
    options: common,
    run: uninstall,
  },
  {
    path: ['service', 'check'],
    usage: 'service check --role master|depot --dir DIR [--user depotsync] [--json]',
    summary:
      "check the service user's ownership and modes of the folder and its key files (0600), and that the configuration validates",
    options: { ...common, dir: { type: 'string' } },
    run: async (ctx) => check(ctx),
  },
];
