import { Client, InvalidCredentialsError, ResultCodeError } from 'ldapts';
import type { ConnectionOptions } from 'node:tls';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { OPERATOR_ROLES, type OperatorRole } from '../db/operators.js';
import type { LdapSettings } from './ldap-settings.js';
import { readPemFile, readSecretLine } from './secret-files.js';

/**
 * Login of an operator against the directory: the search account finds the one user the filter names and
 * reads which mapped groups list them, then the user's own bind checks the password. Every step runs on
 * an encrypted connection (ldaps://, or StartTLS before the first bind). Outcomes, as typed errors:
 *   'network'      the directory cannot be reached (or its TLS fails): local operators are unaffected;
 *   'unauthorized' no such user or a wrong password (one message, so names cannot be probed);
 *   'forbidden'    the password is right but the user is in no mapped group;
 *   'bad-input'    the search account is refused or the filter finds several users (configuration).
 */
export interface DirectoryUser {
  dn: string;
  role: OperatorRole;
  /** The mapped groups that list the user. */
  groups: string[];
}

export class DirectoryLogin {
  private readonly bindPassword: string;
  private readonly tls: ConnectionOptions;

  constructor(readonly settings: LdapSettings) {
    this.bindPassword = readSecretLine(settings.bindPasswordFile, 'LDAP bind password file');
    this.tls = {
      ...(settings.caFile ? { ca: readPemFile(settings.caFile, 'LDAP CA file') } : {}),
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
    };
  }

  /**
   * The whole login within four times `timeoutMs`: ldapts bounds connecting and each operation but not a
   * StartTLS handshake, and a login form must not hang on a directory that stalls.
   */
  async authenticate(name: string, password: string): Promise<DirectoryUser> {
    const limitMs = 4 * this.settings.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.unreachable(new Error(`no answer within ${limitMs} ms`), 'login')),
        limitMs,
      );
    });
    try {
      return await Promise.race([this.login(name, password), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async login(name: string, password: string): Promise<DirectoryUser> {
    // An empty password would be an "unauthenticated bind", which servers accept as success (RFC 4513).
    if (password === '') throw wrongPassword();
    const service = await this.connect();
    let user: { dn: string; groups: string[] };
    try {
      await this.step('bind as the search account', () =>
        service.bind(this.settings.bindDn, this.bindPassword),
      );
      user = await this.step('search', () => this.findUser(service, name));
    } finally {
      await service.unbind().catch(() => undefined);
    }
    // The user's own bind on a connection of its own: the search account's rights never mix with it.
    const own = await this.connect();
    try {
      await this.step('bind as the user', () => own.bind(user.dn, password));
    } finally {
      await own.unbind().catch(() => undefined);
    }
    const roles = user.groups.map((g) => this.settings.groups[g]!);
    const role = OPERATOR_ROLES.find((r) => roles.includes(r));
    if (!role)
      throw new DepotsyncError(
        'forbidden',
        `directory user ${name} is in none of the groups mapped to a role`,
        {
          hint: `add them to one of: ${Object.keys(this.settings.groups).join('; ')}`,
        },
      );
    return { dn: user.dn, role, groups: user.groups };
  }

  private async findUser(c: Client, name: string): Promise<{ dn: string; groups: string[] }> {
    const filter = this.settings.userFilter.replaceAll('{user}', escapeFilterValue(name));
    const { searchEntries } = await c.search(this.settings.baseDn, {
      scope: 'sub',
      filter,
      attributes: ['dn'],
      sizeLimit: 2,
    });
    if (searchEntries.length === 0) throw wrongPassword();
    if (searchEntries.length > 1)
      throw new DepotsyncError('bad-input', `directory: the user filter ${filter} finds several entries`, {
        hint: 'make directory.ldap.userFilter match one attribute unique per user (uid, sAMAccountName)',
      });
    const dn = searchEntries[0]!.dn;
    const groups: string[] = [];
    const member = escapeFilterValue(dn);
    for (const g of Object.keys(this.settings.groups)) {
      const r = await c
        .search(g, {
          scope: 'base',
          filter: `(|(member=${member})(uniqueMember=${member}))`,
          attributes: ['dn'],
        })
        .catch((e: unknown) => {
          // A mapped group that does not exist lists nobody; anything else is an error.
          if (e instanceof ResultCodeError && e.code === 32) return { searchEntries: [] };
          throw e;
        });
      if (r.searchEntries.length > 0) groups.push(g);
    }
    return { dn, groups };
  }

  private async connect(): Promise<Client> {
    const { url, timeoutMs } = this.settings;
    const startTls = url.startsWith('ldap://');
    // Fresh option objects each time (ldapts stores the socket into the options StartTLS is given), and
    // TLS options in the constructor for ldaps:// only: given there with ldap://, StartTLS fails.
    const c = new Client({
      url,
      timeout: timeoutMs,
      connectTimeout: timeoutMs,
      ...(startTls ? {} : { tlsOptions: { ...this.tls } }),
    });
    if (startTls) {
      try {
        await c.startTLS({ ...this.tls, host: new URL(url).hostname.replace(/^\[|\]$/g, '') });
      } catch (e) {
        await c.unbind().catch(() => undefined);
        throw this.unreachable(e, 'StartTLS');
      }
    }
    return c;
  }

  private async step<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      if (isDepotsyncError(e)) throw e;
      if (e instanceof InvalidCredentialsError) {
        if (what === 'bind as the user') throw wrongPassword();
        throw new DepotsyncError(
          'bad-input',
          `directory: the search account ${this.settings.bindDn} was refused`,
          {
            hint: 'check directory.ldap.bindDn and the password in bindPasswordFile',
            cause: e,
          },
        );
      }
      if (e instanceof ResultCodeError)
        throw new DepotsyncError('bad-input', `directory: ${what} failed: ${e.message}`, { cause: e });
      throw this.unreachable(e, what);
    }
  }

  private unreachable(e: unknown, what: string): DepotsyncError {
    return new DepotsyncError(
      'network',
      `the directory ${this.settings.url} is unreachable (${what}: ${(e as Error).message})`,
      { hint: 'local operators can still log in; check the directory server and directory.ldap', cause: e },
    );
  }
}

const wrongPassword = () => new DepotsyncError('unauthorized', 'wrong directory user name or password');

/** RFC 4515: the characters that would change a filter's meaning, escaped as \XX. */
export function escapeFilterValue(v: string): string {
  return v.replace(/[\\*()\0]/g, (ch) => `\\${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
