import { isAbsolute, resolve } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import { intOption, mergeDefaults, stringOption } from '../../src/config/validate.js';
import { OPERATOR_ROLES, type OperatorRole } from '../db/operators.js';

/**
 * Operator login through the organisation's LDAP directory (`directory.ldap` in M/master.json; null =
 * local operators only). The connection is always encrypted: `ldaps://`, or `ldap://` upgraded with
 * StartTLS before the first bind. Relative file names are relative to the master directory.
 */
export interface LdapSettings {
  /** `ldaps://host[:636]` or `ldap://host[:389]` (then StartTLS). */
  url: string;
  /** PEM certificates trusted for the directory's certificate; null = the system's CAs. */
  caFile: string | null;
  /** The account that searches for users (read access to users and the mapped groups). */
  bindDn: string;
  /** A file holding that account's password (first line). */
  bindPasswordFile: string;
  /** Where users are searched (subtree). */
  baseDn: string;
  /** LDAP filter finding one user; `{user}` is replaced by the login name, escaped. */
  userFilter: string;
  /**
   * Group DN -> master role. A user gets the highest role of the mapped groups listing them as `member`
   * or `uniqueMember`, read at each login; a user in none may not log in.
   */
  groups: Record<string, OperatorRole>;
  /** Connecting, and each directory operation, at most. */
  timeoutMs: number;
}

export const DEFAULT_LDAP: LdapSettings = {
  url: '',
  caFile: null,
  bindDn: '',
  bindPasswordFile: '',
  baseDn: '',
  userFilter: '(uid={user})',
  groups: {},
  timeoutMs: 5000,
};

export function decodeLdapSettings(where: string, value: unknown, masterDir: string): LdapSettings | null {
  if (value === null || value === undefined) return null;
  const s = mergeDefaults(where, DEFAULT_LDAP, value);
  stringOption(where, 'url', s.url, /^ldaps?:\/\/[^/?#\s]+\/?$/);
  if (s.caFile !== null) stringOption(where, 'caFile', s.caFile);
  stringOption(where, 'bindDn', s.bindDn);
  stringOption(where, 'bindPasswordFile', s.bindPasswordFile);
  stringOption(where, 'baseDn', s.baseDn);
  stringOption(where, 'userFilter', s.userFilter, /^\(.*\{user\}.*\)$/);
  if (typeof s.groups !== 'object' || s.groups === null || Array.isArray(s.groups))
    throw new DepotsyncError('bad-input', `${where}: groups must be an object of group DN -> role`);
  const groups: Record<string, OperatorRole> = {};
  for (const [dn, role] of Object.entries(s.groups)) {
    if (!OPERATOR_ROLES.includes(role))
      throw new DepotsyncError(
        'bad-input',
        `${where}: groups[${JSON.stringify(dn)}] must be one of ${OPERATOR_ROLES.join(', ')}, got ${JSON.stringify(role)}`,
      );
    if (!dn.includes('='))
      throw new DepotsyncError('bad-input', `${where}: groups key ${JSON.stringify(dn)} is not a DN`);
    groups[dn] = role;
  }
  if (Object.keys(groups).length === 0)
    throw new DepotsyncError('bad-input', `${where}: groups maps no group to a role`, {
      hint: 'for example "groups": {"cn=depotsync-admins,ou=groups,dc=example,dc=org": "admin"}',
    });
  intOption(where, 'timeoutMs', s.timeoutMs, 100, 60_000);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(masterDir, p));
  return {
    ...s,
    groups,
    caFile: s.caFile === null ? null : abs(s.caFile),
    bindPasswordFile: abs(s.bindPasswordFile),
  };
}
