/**
 * Times as people say them.
 */

import { parseTime } from './versions';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** "just now", "3 min ago", "2 h ago", "5 days ago", then the date; '' for no time. */
export function timeAgo(
  value: string | null | undefined,
  now: number = Date.now()
): string {
  const t = parseTime(value);
  if (Number.isNaN(t)) {
    return '';
  }
  const elapsed = now - t;
  if (elapsed < 45 * 1000) {
    // Includes a little clock skew into the future.
    return 'just now';
  }
  if (elapsed < HOUR) {
    return `${Math.max(1, Math.round(elapsed / MINUTE))} min ago`;
  }
  if (elapsed < DAY) {
    return `${Math.floor(elapsed / HOUR)} h ago`;
  }
  const days = Math.floor(elapsed / DAY);
  if (days < 30) {
    return days === 1 ? '1 day ago' : `${days} days ago`;
  }
  return new Date(t).toISOString().slice(0, 10);
}

/** "2024-05-01 14:03 UTC" for a tooltip; '' for no time. */
export function exactTime(value: string | null | undefined): string {
  const t = parseTime(value);
  if (Number.isNaN(t)) {
    return '';
  }
  return `${new Date(t).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** The time in the reader's own zone and locale ("5/1/2024, 4:03:59 PM"); '' for no time. */
export function localTime(
  value: string | null | undefined,
  locales?: string | string[],
  timeZone?: string
): string {
  const t = parseTime(value);
  if (Number.isNaN(t)) {
    return '';
  }
  return new Date(t).toLocaleString(locales, timeZone ? { timeZone } : undefined);
}
