/**
 * What the page tells the user: an error banner until dismissed, a short-lived notice.
 */

import { apiMessage, capitalize, isAbort, toApiError } from '../core/errors';
import { byId, show } from './dom';
import { SESSION_ENDED } from './session';

const NOTICE_MS = 6000;
let noticeTimer: ReturnType<typeof setTimeout> | undefined;

/** An error until dismissed; one from the auto-refresh goes by itself once a refresh works again. */
export function showError(message: string, fromRefresh = false): void {
  byId('error-text').textContent = capitalize(message.trim());
  byId('error').dataset.fromRefresh = fromRefresh ? '1' : '';
  show(byId('error'), true);
}

export function clearError(): void {
  show(byId('error'), false);
  byId('error-text').textContent = '';
}

/** A refresh worked: the error of an earlier one is over. */
export function clearRefreshError(): void {
  if (byId('error').dataset.fromRefresh) {
    clearError();
  }
}

export function notify(message: string): void {
  const notice = byId('notice');
  notice.textContent = message;
  show(notice, true);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => show(notice, false), NOTICE_MS);
}

/** Nothing to say: the request was given up on purpose, or the login page already says why. */
function silent(err: unknown): boolean {
  return isAbort(err) || toApiError(err).reason === SESSION_ENDED;
}

/** A failure in the manager's words: in `where` (a form's message) or in the banner. */
export function report(err: unknown, where?: HTMLElement): void {
  if (silent(err)) {
    return;
  }
  const text = apiMessage(err);
  if (where) {
    where.textContent = text;
  } else {
    showError(text);
  }
}

export function reportRefresh(err: unknown): void {
  if (silent(err)) {
    return;
  }
  showError(`Could not refresh: ${apiMessage(err)}`, true);
}
