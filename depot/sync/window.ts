import { DepotsyncError } from '../../src/errors.js';

/** A daily time window in minutes after midnight; `end < start` crosses midnight ("22:00-05:00"). */
export interface DailyWindow {
  startMin: number;
  endMin: number;
}

const DAY_MIN = 24 * 60;

export function parseWindow(text: string, where = 'window'): DailyWindow {
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$/.exec(text.trim());
  if (!m)
    throw new DepotsyncError(
      'bad-input',
      `${where}: expected "HH:MM-HH:MM" (e.g. "22:00-05:00"), got ${JSON.stringify(text)}`,
    );
  const startMin = Number(m[1]) * 60 + Number(m[2]);
  const endMin = Math.min(DAY_MIN, Number(m[3]) * 60 + Number(m[4]));
  if (startMin === endMin)
    throw new DepotsyncError(
      'bad-input',
      `${where}: start and end are equal in ${JSON.stringify(text)}; leave the window empty for "any time"`,
    );
  return { startMin, endMin };
}

/** Minutes since midnight of `t` in the zone at `offsetMin` minutes east of UTC (fractional). */
function minuteOfDay(t: number, offsetMin: number): number {
  const m = (t / 60_000 + offsetMin) % DAY_MIN;
  return m < 0 ? m + DAY_MIN : m;
}

export function inWindow(w: DailyWindow, t: number, offsetMin: number): boolean {
  const m = minuteOfDay(t, offsetMin);
  return w.startMin < w.endMin ? m >= w.startMin && m < w.endMin : m >= w.startMin || m < w.endMin;
}

/** `t` itself if it is inside the window, else the next time the window opens. */
export function nextInWindow(w: DailyWindow, t: number, offsetMin: number): number {
  if (inWindow(w, t, offsetMin)) return t;
  const m = minuteOfDay(t, offsetMin);
  const wait = (w.startMin - m + DAY_MIN) % DAY_MIN;
  return t + Math.ceil(wait * 60_000);
}

/** Length of the window in milliseconds. */
export function windowLengthMs(w: DailyWindow): number {
  return ((w.endMin - w.startMin + DAY_MIN) % DAY_MIN || DAY_MIN) * 60_000;
}

/** Offset of the machine's local zone at `t`, in minutes east of UTC. */
export function localOffsetMin(t: number): number {
  return -new Date(t).getTimezoneOffset();
}
