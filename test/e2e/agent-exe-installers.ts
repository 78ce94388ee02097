import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Small real Windows installers for `fetch --install` / `--exec` under wine, made by the test: an .exe
 * compiled with mingw-w64 and an .msi built with wixl (scripts/system-deps.sh installs both).
 */

/**
 * An "installer" that records how it was started in `installed.txt` beside itself (its command line and
 * DEPOTSYNC_PATH) and exits with the code given as `/code=N` (0 without).
 */
const MARKER_C = String.raw`#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
int wmain(void) {
  wchar_t out[MAX_PATH], env[MAX_PATH] = L"";
  GetModuleFileNameW(NULL, out, MAX_PATH);
  wcscpy(wcsrchr(out, L'\\') + 1, L"installed.txt");
  GetEnvironmentVariableW(L"DEPOTSYNC_PATH", env, MAX_PATH);
  FILE *f = _wfopen(out, L"w");
  fwprintf(f, L"cmdline=%ls\nDEPOTSYNC_PATH=%ls\n", GetCommandLineW(), env);
  fclose(f);
  const wchar_t *code = wcsstr(GetCommandLineW(), L"/code=");
  return code ? _wtoi(code + 6) : 0;
}
`;

export function buildMarkerExe(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'marker.c'), MARKER_C);
  execFileSync('x86_64-w64-mingw32-gcc', ['-municode', '-s', '-o', 'marker.exe', 'marker.c'], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return join(dir, 'marker.exe');
}

/** The folder (under Program Files) and file the test MSI installs. */
export const MSI_FOLDER = 'depotsync-msi-test';
export const MSI_PAYLOAD = 'hello from the msi\n';

/** A per-machine MSI that installs one file into `Program Files\depotsync-msi-test`. */
export function buildMsi(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'payload.txt'), MSI_PAYLOAD);
  writeFileSync(
    join(dir, 'tool.wxs'),
    `<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="depotsync msi test" Language="1033" Version="1.0.0" Manufacturer="depotsync tests"
           UpgradeCode="6f1c4a52-5a7e-4a53-9d0e-3b1c2d3e4f50">
    <Package InstallerVersion="200" Compressed="yes" InstallScope="perMachine"/>
    <Media Id="1" Cabinet="tool.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="INSTALLDIR" Name="${MSI_FOLDER}">
          <Component Id="Payload" Guid="3c2b1a09-8f7e-4d6c-9b5a-1e2f3a4b5c6d" Win64="yes">
            <File Id="payload" Source="payload.txt" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Main" Level="1"><ComponentRef Id="Payload"/></Feature>
  </Product>
</Wix>
`,
  );
  execFileSync('wixl', ['-a', 'x64', '-o', 'tool.msi', 'tool.wxs'], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return join(dir, 'tool.msi');
}
