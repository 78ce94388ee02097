import type { Command } from './command.js';
import { coreCommands } from './core-commands.js';

/** Every sub-command of `depotsync`. Role folders contribute theirs as they are built. */
export function allCommands(): Command[] {
  return [...coreCommands];
}
