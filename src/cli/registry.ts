import { depotCommands } from '../../depot/commands.js';
import { masterCommands } from '../../master/commands.js';
import { agentCommands } from '../agent/commands.js';
import { tufClientCommand } from '../agent/tuf-client-command.js';
import type { Command } from './command.js';
import { coreCommands } from './core-commands.js';
import { statusCommand } from './status-command.js';

/** Every sub-command of `depotsync`. Role folders contribute theirs. */
export function allCommands(): Command[] {
  return [...coreCommands, ...masterCommands, ...depotCommands, ...agentCommands, tufClientCommand, statusCommand];
}
