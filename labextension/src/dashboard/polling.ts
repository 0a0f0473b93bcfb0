/**
 * The refresh of the view shown: the core's Poller (never two refreshes at once), paused
 * while the browser tab is hidden and caught up as soon as it is shown again.
 */

import { Poller } from '../core/poller';
import { clearRefreshError, reportRefresh } from './messages';
import { refreshTimes } from './times';

export const REFRESH_MS = 4000;

let poller: Poller | null = null;

/** Refresh with `refresh` now and every few seconds, instead of whatever was polled before. */
export function startPolling(refresh: () => Promise<void>): void {
  stopPolling();
  poller = new Poller({
    interval: REFRESH_MS,
    task: async () => {
      try {
        await refresh();
        clearRefreshError();
      } catch (err) {
        reportRefresh(err);
      } finally {
        refreshTimes();
      }
    }
  });
  if (!document.hidden) {
    poller.start();
  }
}

export function stopPolling(): void {
  poller?.dispose();
  poller = null;
}

/** Refresh now, after an action (joined with one in flight). */
export function refreshNow(): Promise<void> {
  return poller ? poller.refresh() : Promise.resolve();
}

export function pollWhileVisible(): void {
  document.addEventListener('visibilitychange', () => {
    if (!poller) {
      return;
    }
    if (document.hidden) {
      poller.stop();
    } else {
      poller.start();
    }
  });
}
