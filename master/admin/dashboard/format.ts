import { html } from 'hono/html';
import { formatBytes } from '../alerts.js';

/** Small display helpers for the dashboard; they return plain strings (escaped by the html helper). */
export { formatBytes };

export function duration(seconds: number | null): string {
  if (seconds === null) return '–';
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} days`;
}

/** ISO time without milliseconds, for title attributes. */
export function stamp(iso: string | null): string {
  return iso ? iso.replace(/\.\d+Z$/, 'Z') : '';
}

/**
 * A point in time as `<time>`: the server renders the absolute time (so a rendering only changes when the
 * data does, and live updates are sent only then); the page script shows it as "3 min ago".
 */
export function when(iso: string | null, never = 'never') {
  return iso ? html`<time datetime="${iso}" title="${stamp(iso)}">${stamp(iso)}</time>` : html`${never}`;
}
