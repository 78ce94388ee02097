import { isAbsolute, resolve } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import { intOption, mergeDefaults, stringOption } from '../../src/config/validate.js';

/**
 * Alert e-mail settings (`alerts.smtp` in M/master.json; null = no e-mail). The connection always
 * upgrades with STARTTLS before anything else is sent (there is no setting to turn that off): a server
 * that does not offer it gets no mail at all. Relative file names are relative to the master directory.
 */
export interface SmtpSettings {
  host: string;
  /** Submission port; 587 by default. */
  port: number;
  /** The sender address. */
  from: string;
  /** Recipients of every alert e-mail. */
  to: string[];
  /** SMTP AUTH user; null = no authentication (then passwordFile must be null too). */
  user: string | null;
  /** A file holding the SMTP password (first line; kept out of master.json). */
  passwordFile: string | null;
  /** PEM certificates trusted for the server's certificate; null = the system's CAs. */
  caFile: string | null;
  /** One delivery attempt (connect, STARTTLS, AUTH, send) at most. */
  timeoutMs: number;
  attempts: number;
  /** First retry delay; doubles per attempt. */
  backoffMs: number;
  /** E-mails waiting at most; older ones are dropped first (the master never blocks on mail). */
  maxQueue: number;
}

export const DEFAULT_SMTP: SmtpSettings = {
  host: '',
  port: 587,
  from: '',
  to: [],
  user: null,
  passwordFile: null,
  caFile: null,
  timeoutMs: 30_000,
  attempts: 5,
  backoffMs: 5000,
  maxQueue: 1000,
};

/** An address as SMTP takes it in the envelope: no spaces, no angle brackets, one @. */
const ADDRESS = /^[^\s<>@",;]+@[^\s<>@",;]+$/;
const HOST = /^[A-Za-z0-9.:[\]-]{1,253}$/;

/** Decode `alerts.smtp` (null or absent = no e-mail); `masterDir` anchors relative file names. */
export function decodeSmtpSettings(where: string, value: unknown, masterDir: string): SmtpSettings | null {
  if (value === null || value === undefined) return null;
  const s = mergeDefaults(where, DEFAULT_SMTP, value);
  stringOption(where, 'host', s.host, HOST);
  intOption(where, 'port', s.port, 1, 65535);
  stringOption(where, 'from', s.from, ADDRESS);
  if (!Array.isArray(s.to) || s.to.length === 0)
    throw new DepotsyncError('bad-input', `${where}: to must be a non-empty list of e-mail addresses`, {
      hint: 'for example "to": ["ops@example.org"]',
    });
  s.to.forEach((a, i) => stringOption(where, `to[${i}]`, a, ADDRESS));
  for (const k of ['user', 'passwordFile', 'caFile'] as const)
    if (s[k] !== null) stringOption(where, k, s[k]);
  if ((s.user === null) !== (s.passwordFile === null))
    throw new DepotsyncError('bad-input', `${where}: user and passwordFile go together`, {
      hint: 'give both for SMTP authentication, or neither',
    });
  intOption(where, 'timeoutMs', s.timeoutMs, 1000, 10 * 60_000);
  intOption(where, 'attempts', s.attempts, 1, 100);
  intOption(where, 'backoffMs', s.backoffMs, 0, 3_600_000);
  intOption(where, 'maxQueue', s.maxQueue, 1, 1_000_000);
  const abs = (p: string | null) => (p === null || isAbsolute(p) ? p : resolve(masterDir, p));
  return { ...s, to: [...s.to], passwordFile: abs(s.passwordFile), caFile: abs(s.caFile) };
}
