/**
 * The login session: its token is kept per browser tab (sessionStorage), never in a cookie,
 * so no other site can make the browser use it.
 */

import { canDeploy, canManageUsers } from '../core/roles';

const SESSION_KEY = 'jupyter-deploy-dashboard-session';

/** The reason of the error a call gets once its session has ended. */
export const SESSION_ENDED = 'session-ended';

export interface ISession {
  token: string;
  token_id: string;
  username: string;
  scope: string;
  role?: string | null;
}

export type MessageKind = 'info' | 'error';

let current: ISession | null = null;
const endListeners: Array<(message: string, kind: MessageKind) => void> = [];

export function session(): ISession | null {
  return current;
}

export function saveSession(value: ISession): void {
  current = value;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
}

/** The session this tab kept, if it looks like one. */
export function loadSession(): ISession | null {
  let kept: unknown = null;
  try {
    kept = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    return null;
  }
  const s = kept as Partial<ISession> | null;
  if (!s || typeof s.token !== 'string' || typeof s.token_id !== 'string') {
    return null;
  }
  return s as ISession;
}

/** Use a kept session again (its token is checked by the caller's first request). */
export function resumeSession(value: ISession): void {
  current = value;
}

export function forgetSession(): void {
  current = null;
  sessionStorage.removeItem(SESSION_KEY);
}

/** Called with the message whenever a session ends, to go back to the login page. */
export function onSessionEnd(listener: (message: string, kind: MessageKind) => void): void {
  endListeners.push(listener);
}

/** Forget the token and tell the page, which shows the login form with `message`. */
export function endSession(message: string, kind: MessageKind = 'error'): void {
  forgetSession();
  for (const listener of endListeners) {
    listener(message, kind);
  }
}

export function mayDeploy(): boolean {
  return !!current && canDeploy(current.role);
}

export function mayManageUsers(): boolean {
  return !!current && canManageUsers(current.role, current.scope);
}
