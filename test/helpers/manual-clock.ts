export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

/** A settable clock shared by a fake server and the code under test (no sleeps). */
export class Clock {
  constructor(public t = Math.floor(Date.now() / 1000) * 1000) {}
  now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}
