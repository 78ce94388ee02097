import { existsSync } from 'node:fs';

/**
 * A settable clock for real processes: Debian's libfaketime (package `faketime`, preloaded) shifts
 * what `Date`, OpenSSL's certificate checks and SQLite see, by `FAKETIME="+Nd"`. Monotonic clocks stay
 * real so timers and timeouts behave.
 */
const LIB = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/faketime/libfaketime.so.1',
].find((p) => existsSync(p));

export const fakeTimeAvailable = LIB !== undefined;

/** Environment for a child process whose clock runs `days` (fractions allowed) ahead of the real one. */
export function daysAhead(days: number): NodeJS.ProcessEnv {
  if (!LIB)
    throw new Error('libfaketime is not installed (apt-get install faketime; scripts/system-deps.sh)');
  const seconds = Math.round(days * 86_400);
  return {
    LD_PRELOAD: LIB,
    FAKETIME: `${seconds >= 0 ? '+' : ''}${seconds}`,
    DONT_FAKE_MONOTONIC: '1',
    FAKETIME_DONT_RESET: '1',
  };
}
