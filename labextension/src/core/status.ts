/**
 * Service and version statuses: how a badge looks and which actions make sense.
 *
 * The manager's statuses are building, starting, running, stopped, failed and
 * crashed; anything else is shown as it is, with a neutral badge.
 */

/** The badge's colour family (`jd-badge-<tone>`). */
export type StatusTone = 'ok' | 'busy' | 'idle' | 'bad' | 'unknown';

const TONES: Record<string, StatusTone> = {
  running: 'ok',
  building: 'busy',
  starting: 'busy',
  stopping: 'busy',
  pending: 'busy',
  stopped: 'idle',
  failed: 'bad',
  crashed: 'bad'
};

/** Normalised status text ('unknown' for an empty or missing one). */
export function normalizeStatus(status: string | null | undefined): string {
  const s = (status || '').trim().toLowerCase();
  return s || 'unknown';
}

export function statusTone(status: string | null | undefined): StatusTone {
  return TONES[normalizeStatus(status)] || 'unknown';
}

/** A status that is still changing by itself (the list is polled anyway; the badge spins). */
export function isTransient(status: string | null | undefined): boolean {
  return statusTone(status) === 'busy';
}

/** Stop is offered while something runs or is on its way to running. */
export function canStop(status: string | null | undefined): boolean {
  const tone = statusTone(status);
  return tone === 'ok' || tone === 'busy';
}

/** Start is offered when nothing runs: stopped, failed, crashed or unknown. */
export function canStart(status: string | null | undefined): boolean {
  return !canStop(status);
}

/** A short sentence for screen readers and tooltips. */
export function statusDescription(status: string | null | undefined): string {
  switch (normalizeStatus(status)) {
    case 'running':
      return 'running and answering calls';
    case 'building':
      return 'building its image or environment';
    case 'starting':
      return 'starting; waiting for its health check';
    case 'stopped':
      return 'stopped';
    case 'failed':
      return 'failed to build or start';
    case 'crashed':
      return 'crashed after starting';
    default:
      return `status: ${normalizeStatus(status)}`;
  }
}
