import { agentCommands } from '../agent/commands.js';
import { selfCheckCommand } from '../agent/self-check.js';
import { serviceCommands } from '../agent/service.js';
import { defaultAgentDir } from '../agent/windows/paths.js';
import type { Command } from '../src/command/command.js';
import { runCommandLine } from './run.js';

/** The version the self-contained agent reports; set by the packaging script (scripts/package-agent.mjs). */
declare const DEPOTSYNC_AGENT_VERSION: string | undefined;

export const AGENT_PROGRAM = 'depotsync-agent';

/** `depotsync agent X …` as `depotsync-agent X …`: the same commands, options and output. */
function unprefixed(c: Command): Command {
  const path = c.path[0] === 'agent' ? c.path.slice(1) : c.path;
  const usage = c.usage.startsWith('agent ') ? c.usage.slice('agent '.length) : c.usage;
  return { ...c, path, usage };
}

const versionCommand: Command = {
  path: ['version'],
  usage: 'version',
  summary: 'print the agent version, the Node.js it runs on and which BLAKE3 and zstd implementations loaded',
  async run() {
    const version = typeof DEPOTSYNC_AGENT_VERSION === 'string' ? DEPOTSYNC_AGENT_VERSION : 'development';
    let blake3: string;
    try {
      blake3 = (await import('../src/hash/blake3.js')).blake3Implementation();
    } catch (e) {
      blake3 = `unavailable (${(e as Error).message})`;
    }
    // The zstd decoder of manifest deltas: the WebAssembly build in the executables (no native addon).
    let zstd: string;
    try {
      zstd = (await import('../src/compress/zstd-decoder.js').then((m) => m.loadZstdDecoder()))
        .implementation;
    } catch (e) {
      zstd = `unavailable (${(e as Error).message})`;
    }
    const platform = `${process.platform}-${process.arch}`;
    return {
      json: { version, node: process.version, platform, blake3, zstd },
      human: `${AGENT_PROGRAM} ${version} (node ${process.version}, ${platform}, blake3: ${blake3}, zstd: ${zstd})`,
    };
  },
};

export function agentExeCommands(): Command[] {
  return [...agentCommands, ...serviceCommands, selfCheckCommand].map(unprefixed).concat(versionCommand);
}

/**
 * The entry of the self-contained agent (`depotsync-agent`, docs/windows-agent.md): the agent's
 * commands without the `agent` word, `--dir` defaulting to the platform's machine-wide folder.
 */
export async function agentMain(argv: string[]): Promise<number> {
  const commands = agentExeCommands();
  const named = commands.find((c) => c.path.every((w, i) => argv[i] === w));
  const args =
    named?.options?.dir && !argv.some((a) => a === '--dir' || a.startsWith('--dir='))
      ? [...argv, '--dir', defaultAgentDir()]
      : argv;
  return runCommandLine(args, {
    commands: async () => commands,
    help: async () => helpText(commands),
    unknown: (a) => `unknown command: ${AGENT_PROGRAM} ${a.slice(0, 1).join(' ')}`,
    hint: `run '${AGENT_PROGRAM} help' for the list of commands`,
    program: AGENT_PROGRAM,
  });
}

function helpText(commands: Command[]): string {
  const lines = commands.map((c) => `  ${AGENT_PROGRAM} ${c.usage}\n      ${c.summary}`);
  return `${AGENT_PROGRAM}: fetch and verify signed packages (the depotsync agent, self-contained)\n\n${lines.join('\n')}\n\n--dir defaults to ${defaultAgentDir()}. Every command accepts --json and --log-level LEVEL.\n`;
}
