import { readFileSync } from 'node:fs';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';

/**
 * Files named by settings that hold what master.json must not: a password (first line), or the PEM
 * certificates a TLS client trusts for one server (SMTP, LDAP).
 */
export function readSecretLine(path: string, what: string): string {
  const line = readText(path, what).split(/\r?\n/)[0] ?? '';
  if (!line)
    throw new DepotsyncError('bad-input', `${what} ${path} is empty`, {
      hint: 'write the password on the first line of the file (mode 0600)',
    });
  return line;
}

export function readPemFile(path: string, what: string): string {
  const text = readText(path, what);
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    throw new DepotsyncError('bad-input', `${what} ${path} holds no PEM certificate`, {
      hint: "give the certificate(s) of the CA that issued the server's certificate, in PEM",
    });
  return text;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `${what} ${path}`);
  }
}
