import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkPrivateFiles, parseIcacls, posixVerdict, windowsVerdict } from '../../agent/windows/acl.js';
import {
  checkOutputPath,
  checkWindowsPathLengths,
  defaultAgentDir,
  WINDOWS_MAX_PATH,
} from '../../agent/windows/paths.js';
import { checkInstallTarget, execLaunch, installLaunch } from '../../agent/exec.js';
import { installPlan, parseScState, quoteWindowsArg, uninstallPlan } from '../../agent/service.js';
import { expectError } from '../helpers/errors.js';
import { tempDir } from '../helpers/tmp.js';

describe('agent output paths on Windows', () => {
  const win = (p: string) => checkOutputPath(p, 'win32', 'C:\\Users\\op');
  it('accepts ordinary full and relative paths', () => {
    expect(win('D:\\Packages\\tool')).toBe('D:\\Packages\\tool');
    expect(win('out\\tool.msi')).toBe('C:\\Users\\op\\out\\tool.msi');
  });
  it.each([
    'C:\\Packages\\CON',
    'C:\\x\\nul.txt',
    'C:\\COM1\\tool',
    'lpt9',
    'C:\\a\\AUX.tar.gz',
    'C:\\x\\conin$',
  ])('refuses the reserved device name in %s', (p) =>
    expectError(() => win(p), 'bad-path', /reserves for a device/),
  );
  it('refuses a drive-relative path, a device prefix, trailing dots and refused characters', () => {
    expectError(() => win('C:tool'), 'bad-path', /relative to the current folder of a drive/);
    expectError(() => win('\\\\?\\C:\\tool'), 'bad-path', /prefix/);
    expectError(() => win('C:\\tool.'), 'bad-path', /ends in a dot or space/);
    expectError(() => win('C:\\to|ol'), 'bad-path', /character Windows refuses/);
  });
  it('refuses a path longer than Windows programs handle', () => {
    const long = `C:\\${'a'.repeat(WINDOWS_MAX_PATH)}`;
    expectError(() => win(long), 'bad-path', new RegExp(`${long.length} characters long`));
    expect(win(`C:\\${'a'.repeat(WINDOWS_MAX_PATH - 3)}`)).toHaveLength(WINDOWS_MAX_PATH);
  });
  it('on Linux: names Windows reserves are fine, names over 255 bytes are not', () => {
    expect(checkOutputPath('/srv/CON', 'linux')).toBe('/srv/CON');
    expectError(() => checkOutputPath(`/srv/${'é'.repeat(128)}`, 'linux'), 'bad-path', /256 bytes/);
  });
  it('defaults the agent directory to ProgramData on Windows', () => {
    expect(defaultAgentDir('win32', { ProgramData: 'D:\\PD' })).toBe('D:\\PD\\depotsync\\agent');
    expect(defaultAgentDir('win32', {})).toBe('C:\\ProgramData\\depotsync\\agent');
    expect(defaultAgentDir('linux', {})).toBe('/var/lib/depotsync/agent');
  });
});

describe('key and state permissions', () => {
  // Real `icacls FILE` output of Windows Server 2022 (English), as the agent sets it and as a user loosened it.
  const file = 'C:\\ProgramData\\depotsync\\agent\\keys\\agent-key.pem';
  const privateOut = `${file} NT AUTHORITY\\SYSTEM:(I)(F)\r\n${' '.repeat(file.length)} BUILTIN\\Administrators:(I)(F)\r\n\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n`;
  const looseOut = `${file} NT AUTHORITY\\SYSTEM:(I)(F)\r\n${' '.repeat(file.length)} BUILTIN\\Administrators:(I)(F)\r\n${' '.repeat(file.length)} BUILTIN\\Users:(I)(RX)\r\n${' '.repeat(file.length)} *S-1-5-21-1-2-3-1001:(R)\r\n\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n`;

  it('reads icacls output and tells private from loose', () => {
    expect(parseIcacls(privateOut, file)).toEqual([
      { principal: 'NT AUTHORITY\\SYSTEM', rights: '(I)(F)' },
      { principal: 'BUILTIN\\Administrators', rights: '(I)(F)' },
    ]);
    expect(windowsVerdict(privateOut, file)).toEqual({ state: 'private' });
    expect(windowsVerdict(looseOut, file)).toEqual({
      state: 'loose',
      who: ['BUILTIN\\Users:(I)(RX)', '*S-1-5-21-1-2-3-1001:(R)'],
    });
    // SIDs instead of names (no name known) and deny entries are fine.
    const sids = `${file} *S-1-5-18:(F)\r\n  *S-1-5-32-544:(F)\r\n  Everyone:(DENY)(R)\r\n`;
    expect(windowsVerdict(sids, file)).toEqual({ state: 'private' });
    // wine's icacls prints nothing at all: not verified (the agent warns), never taken for private.
    expect(windowsVerdict('', file)).toEqual({ state: 'unverified' });
  });

  it('POSIX: group or other bits are loose', () => {
    expect(posixVerdict(0o100600)).toEqual({ state: 'private' });
    expect(posixVerdict(0o100640)).toEqual({ state: 'loose', who: ['group'] });
    expect(posixVerdict(0o100604)).toEqual({ state: 'loose', who: ['others'] });
  });

  const tmp = tempDir('depotsync-acl-');
  afterAll(() => tmp.cleanup());
  it.skipIf(process.platform === 'win32')('refuses a key file readable by group or others', () => {
    const key = join(tmp.dir, 'agent-key.pem');
    writeFileSync(key, 'secret', { mode: 0o600 });
    checkPrivateFiles([key, join(tmp.dir, 'absent')]);
    chmodSync(key, 0o644);
    expectError(() => checkPrivateFiles([key]), 'forbidden', /can be read by group, others/);
  });
});

describe('Windows service registration', () => {
  it('quotes arguments as Windows reads them back', () => {
    expect(quoteWindowsArg('plain')).toBe('plain');
    expect(quoteWindowsArg('C:\\Program Files\\a.exe')).toBe('"C:\\Program Files\\a.exe"');
    expect(quoteWindowsArg('C:\\dir with space\\')).toBe('"C:\\dir with space\\\\"');
    expect(quoteWindowsArg('say "hi"')).toBe('"say \\"hi\\""');
  });
  it('registers the service host, which runs the agent, automatic and restarted on failure; removes it', () => {
    const plan = installPlan(
      'C:\\Program Files\\depotsync\\depotsync-agent.exe',
      'C:\\ProgramData\\depotsync\\agent',
      { programData: 'C:\\ProgramData', interval: '600' },
    );
    expect(plan.steps[0]).toEqual([
      'create',
      'depotsync-agent',
      'binPath=',
      '"C:\\Program Files\\depotsync\\depotsync-agent-service.exe" --agent "C:\\Program Files\\depotsync\\depotsync-agent.exe"' +
        ' --log C:\\ProgramData\\depotsync\\depotsync-agent.log --stop-file C:\\ProgramData\\depotsync\\depotsync-agent.stop' +
        ' -- service run --dir C:\\ProgramData\\depotsync\\agent --interval 600',
      'start=',
      'auto',
      'obj=',
      'LocalSystem',
      'DisplayName=',
      'depotsync agent',
    ]);
    expect(plan.steps.find((s) => s[0] === 'failure')).toEqual([
      'failure',
      'depotsync-agent',
      'reset=',
      '86400',
      'actions=',
      'restart/60000/restart/60000/restart/60000',
    ]);
    const named = installPlan('C:\\a\\agent.exe', 'C:\\A', {
      name: 'ds-2',
      host: 'D:\\h.exe',
      selfPackage: 'p',
    });
    expect(named.steps[0]?.[3]).toBe(
      'D:\\h.exe --agent C:\\a\\agent.exe --log C:\\ProgramData\\depotsync\\ds-2.log' +
        ' --stop-file C:\\ProgramData\\depotsync\\ds-2.stop -- service run --dir C:\\A --package p',
    );
    expect(uninstallPlan().steps).toEqual([
      ['stop', 'depotsync-agent'],
      ['delete', 'depotsync-agent'],
    ]);
    expectError(() => installPlan('depotsync-agent.exe', 'agent'), 'usage', /full paths/);
    expectError(() => installPlan('C:\\a.exe', 'C:\\A', { name: 'a b' }), 'usage', /not a service name/);
  });
  it('reads the state sc.exe query prints', () => {
    expect(
      parseScState(
        'SERVICE_NAME: x\r\n        TYPE               : 10  WIN32_OWN_PROCESS\r\n        STATE              : 4  RUNNING\r\n',
      ),
    ).toBe('RUNNING');
    expect(parseScState('        STATE              : 3  STOP_PENDING\n')).toBe('STOP_PENDING');
    expect(parseScState('[SC] OpenService FAILED 1060')).toBeUndefined();
  });
});

describe('running a verified package on Windows', () => {
  it('--exec: cmd.exe runs the command with the path appended in quotes', () => {
    const l = execLaunch('C:\\tools\\unpack.exe -y', 'C:\\Packages\\my tool.zip', 'win32');
    expect(l.args).toEqual(['/d', '/s', '/c', '"C:\\tools\\unpack.exe -y "C:\\Packages\\my tool.zip""']);
    expect(l.verbatim).toBe(true);
    expect(l.file).toMatch(/cmd\.exe$/i);
    // The path never becomes part of the shell's text on POSIX.
    expect(execLaunch('install.sh', '/srv/a b', 'linux')).toMatchObject({
      file: '/bin/sh',
      args: ['-c', 'install.sh "$1"', 'depotsync-exec', '/srv/a b'],
    });
    expectError(() => execLaunch('x', 'C:\\a%PATH%b', 'win32'), 'bad-path', /which cmd\.exe would expand/);
    expectError(() => execLaunch('  ', 'C:\\a', 'win32'), 'usage', /command is empty/);
  });
  it('--install: an .msi through msiexec, unattended; an .exe itself; nothing else', () => {
    const msi = installLaunch('C:\\Packages\\Tool 1.msi', 'ADDLOCAL=ALL');
    expect(msi.file).toMatch(/System32\\msiexec\.exe$/);
    expect(msi.args).toEqual(['/i', '"C:\\Packages\\Tool 1.msi"', '/qn', '/norestart', 'ADDLOCAL=ALL']);
    const exe = installLaunch('C:\\Packages\\setup v2.EXE', '/S');
    expect(exe).toMatchObject({
      file: 'C:\\Packages\\setup v2.EXE',
      args: ['/S'],
      argv0: '"C:\\Packages\\setup v2.EXE"',
    });
    expectError(() => installLaunch('C:\\Packages\\tool.zip'), 'usage', /not an \.exe or \.msi file/);
    expectError(() => checkInstallTarget('C:\\P\\tool.msi', 'linux'), 'usage', /runs a Windows installer/);
    checkInstallTarget('C:\\P\\tool.msi', 'win32');
  });
});

describe('package paths under --out on Windows', () => {
  it('refuses a package whose deepest staged file would pass 259 characters', () => {
    const out = 'C:\\Packages\\tool';
    checkWindowsPathLengths(out, [`${out}\\a.txt`, `C:\\${'b'.repeat(WINDOWS_MAX_PATH - 3)}`]);
    const deep = `C:\\${'d'.repeat(WINDOWS_MAX_PATH)}`;
    expectError(
      () => checkWindowsPathLengths(out, [`${out}\\a.txt`, deep]),
      'bad-path',
      /too deep for this package: a file would be written at a path of 262 characters/,
    );
  });
});
