import type { Command } from '../src/command/command.js';
import { coreCommands } from './core-commands.js';
import { statusCommand } from './status-command.js';

/**
 * The role folders' command lists, loaded only for the role a command line names: importing every
 * role pulls in the servers, TLS, metrics and TUF libraries (about 0.4 s of module loading per run
 * here), which `depotsync master export` or `agent fetch` would otherwise pay before their first byte.
 */
const ROLES: Record<string, () => Promise<Command[]>> = {
  master: async () => (await import('../master/commands.js')).masterCommands,
  depot: async () => (await import('../depot/commands.js')).depotCommands,
  agent: async () => (await import('../agent/commands.js')).agentCommands,
  'tuf-client': async () => [(await import('../agent/tuf-client-command.js')).tufClientCommand],
  service: async () => (await import('./service/commands.js')).serviceCommands,
};

/**
 * Every sub-command of `depotsync` (help, and command lines that name no role).
 * Role folders contribute theirs.
 */
export async function allCommands(): Promise<Command[]> {
  const roles = await Promise.all(Object.values(ROLES).map((load) => load()));
  return [...coreCommands, ...roles.flat(), statusCommand];
}

/** The commands a command line can mean: the core ones, plus its role's when its first word names one. */
export async function commandsFor(argv: readonly string[]): Promise<Command[]> {
  const light = [...coreCommands, statusCommand];
  const load = argv[0] !== undefined && Object.hasOwn(ROLES, argv[0]) ? ROLES[argv[0]] : undefined;
  if (load) return [...light, ...(await load())];
  return light.some((c) => c.path[0] === argv[0]) ? light : allCommands();
}
