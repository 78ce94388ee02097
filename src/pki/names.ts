import { isIP } from 'node:net';
import { DepotsyncError } from '../errors.js';

/** What a machine certificate is for; recorded in the subject as OU=depot or OU=agent. */
export type MachineRole = 'depot' | 'agent';
export const MACHINE_ROLES: readonly MachineRole[] = ['depot', 'agent'];

export function isMachineRole(v: unknown): v is MachineRole {
  return v === 'depot' || v === 'agent';
}

/**
 * Machine names become certificate common names, database keys and parts of file names, so they are
 * held to a small alphabet: letters, digits, '.', '_' and '-', 1 to 64 characters, no leading dot
 * (blocks path tricks like '..' and hidden files, and names that look like something else in a DN).
 */
export const MACHINE_NAME = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;

export function checkMachineName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !MACHINE_NAME.test(name)) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: machine name ${JSON.stringify(name)} is not allowed`,
      {
        hint: 'use 1 to 64 letters, digits, ".", "_" or "-", not starting with "."',
      },
    );
  }
  return name;
}

export function checkMachineRole(role: unknown, what: string): MachineRole {
  if (!isMachineRole(role)) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: role must be "depot" or "agent", got ${JSON.stringify(role)}`,
    );
  }
  return role;
}

/** DNS names allowed in a subjectAltName: LDH labels, optional single leading wildcard label refused. */
const DNS_NAME =
  /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function checkDnsNames(names: readonly unknown[], what: string): string[] {
  return names.map((n) => {
    if (typeof n !== 'string' || !DNS_NAME.test(n)) {
      throw new DepotsyncError(
        'bad-certificate',
        `${what}: DNS name ${JSON.stringify(n)} is not a valid host name`,
      );
    }
    return n.toLowerCase();
  });
}

export function checkIpAddresses(ips: readonly unknown[], what: string): string[] {
  return ips.map((ip) => {
    if (typeof ip !== 'string' || isIP(ip) === 0) {
      throw new DepotsyncError('bad-certificate', `${what}: IP address ${JSON.stringify(ip)} is not valid`);
    }
    return ip;
  });
}
