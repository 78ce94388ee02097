// Preload (`node --import ./scripts/no-native.mjs …`) that makes this process behave like a machine
// where no native addon was ever built: every attempt to load a `.node` file fails as a missing addon
// would. The agent must still run (BLAKE3 through WebAssembly, state and cache in plain files).
// With DEPOTSYNC_NO_NATIVE_LOG=FILE, each refused addon is appended to FILE (one path a line).
import { appendFileSync } from 'node:fs';
import process from 'node:process';

const log = process.env.DEPOTSYNC_NO_NATIVE_LOG;

process.dlopen = (_module, filename) => {
  if (log) appendFileSync(log, `${filename}\n`);
  const e = new Error(`native addon refused (no-native run): ${filename}`);
  e.code = 'ERR_DLOPEN_FAILED';
  throw e;
};
