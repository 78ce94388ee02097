/**
 * Child process for the kill -9 test: one `depot sync` of the directory in argv[2], printing a line
 * after every durable store of chunks and the engine's step logs, so the parent can kill it at chosen
 * moments (mid-download, just before and just after the switch).
 */
import { createLogger } from '../../src/log.js';
import { runDepotSync } from '../../depot/commands.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: sync-child DIR');
const r = await runDepotSync(dir, {
  // Step lines ("sync metadata", "sync chunks", "sync switch") go to stdout as JSON for the parent.
  logger: createLogger({ level: 'info', destination: process.stdout }),
  onStored: (chunks, bytes) => process.stdout.write(`stored ${chunks} ${bytes}\n`),
});
process.stdout.write(`done ${JSON.stringify(r)}\n`);
