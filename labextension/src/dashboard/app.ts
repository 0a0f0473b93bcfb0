/**
 * The page's flow: log in (or resume this tab's session), show the view the URL fragment
 * names and keep it refreshed, log out.
 */

import { toApiError } from '../core/errors';
import { loginProblem } from '../core/login';
import { api } from './api';
import { byId, show } from './dom';
import { clearError, report, showError } from './messages';
import { pollWhileVisible, startPolling, stopPolling } from './polling';
import { forget } from './redraw';
import { openLogs, stopLog, wireLogs } from './logs';
import { currentRoute } from './routes';
import { refreshServices } from './services';
import {
  endSession,
  forgetSession,
  loadSession,
  MessageKind,
  mayDeploy,
  mayManageUsers,
  onSessionEnd,
  resumeSession,
  saveSession,
  session,
  SESSION_ENDED
} from './session';
import { hideSecret, refreshTokens, wireTokens } from './tokens';
import { probeUsers, refreshUsers, usersAvailable, wireUsers } from './users';

interface IView {
  section: string;
  /** Polled while the view is shown. */
  refresh?: () => Promise<void>;
  enter?: (args: string[]) => void;
}

const VIEWS: Record<string, IView> = {
  services: { section: 'services-view', refresh: refreshServices },
  logs: { section: 'logs-view', enter: args => openLogs(args[0], args[1] || '') },
  tokens: { section: 'tokens-view', refresh: refreshTokens },
  users: { section: 'users-view', refresh: refreshUsers }
};

const APP_PARTS = ['services-view', 'logs-view', 'tokens-view', 'users-view', 'tabs', 'session', 'notice'];

function showLogin(message = '', kind: MessageKind = 'error'): void {
  show(byId('login-view'), true);
  for (const id of APP_PARTS) {
    show(byId(id), false);
  }
  clearError();
  hideSecret(false);
  const text = byId('login-message');
  text.textContent = message;
  text.classList.toggle('info', kind === 'info');
  // The name is usually still there after a lapsed session; the password is what is left to type.
  const username = byId<HTMLInputElement>('login-username');
  (username.value ? byId('login-password') : username).focus();
}

function sessionEnded(message: string, kind: MessageKind): void {
  stopPolling();
  stopLog();
  forget();
  showLogin(message, kind);
}

async function login(event: Event): Promise<void> {
  event.preventDefault();
  const message = byId('login-message');
  const passwordInput = byId<HTMLInputElement>('login-password');
  const username = byId<HTMLInputElement>('login-username').value.trim();
  const password = passwordInput.value;
  message.textContent = '';
  const problem = loginProblem({ username, password });
  if (problem) {
    message.textContent = problem;
    return;
  }
  const button = byId<HTMLButtonElement>('login-submit');
  button.disabled = true;
  try {
    const answer = await api.login(username, password);
    saveSession(answer); // whoami needs the token
    const who = await api.whoami();
    saveSession({ ...answer, role: who.role });
    passwordInput.value = '';
    startApp();
  } catch (err) {
    forgetSession();
    message.classList.remove('info');
    report(err, message);
    passwordInput.value = '';
    passwordInput.focus();
  } finally {
    button.disabled = false;
  }
}

async function logout(): Promise<void> {
  const current = session();
  if (!current) {
    return;
  }
  try {
    // Revoke rather than just forget, so the token is worthless even if it was copied somewhere.
    await api.revokeToken(current.token_id, { keepSession: true });
  } catch (err) {
    if (toApiError(err).status !== 401) {
      showError(`Could not revoke the session's token: ${toApiError(err).message}`);
    }
  }
  endSession('You are logged out.', 'info');
}

function startApp(): void {
  const current = session();
  if (!current) {
    return;
  }
  show(byId('login-view'), false);
  show(byId('tabs'), true);
  show(byId('session'), true);
  clearError();
  byId('login-message').textContent = '';
  byId('whoami').textContent = `${current.username} (${current.role || current.scope})`;
  show(byId('users-tab'), usersAvailable());
  show(byId('token-form'), mayDeploy());
  route();
  if (mayManageUsers()) {
    void probeUsers();
  }
}

function route(): void {
  if (!session()) {
    return;
  }
  const { view, args } = currentRoute();
  const target = VIEWS[view] && !(view === 'users' && !usersAvailable()) ? view : 'services';
  for (const [name, v] of Object.entries(VIEWS)) {
    show(byId(v.section), name === target);
  }
  for (const link of Array.from(document.querySelectorAll<HTMLElement>('#tabs a[data-tab]'))) {
    // A service's logs belong to the Services tab.
    const active = link.dataset.tab === target || (target === 'logs' && link.dataset.tab === 'services');
    if (active) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
  if (target !== 'logs') {
    stopLog();
  }
  const shown = VIEWS[target];
  shown.enter?.(args);
  if (shown.refresh) {
    startPolling(shown.refresh);
  } else {
    stopPolling();
  }
}

async function showManagerInfo(): Promise<void> {
  try {
    const health = await api.health();
    byId('manager-info').textContent = `${health.version} · ${health.runtime} runtime`;
  } catch {
    // Purely informative; the first real call reports an unreachable manager.
  }
}

/** Use this tab's session again if it still works, else show the login form. */
async function resume(): Promise<void> {
  const kept = loadSession();
  if (!kept) {
    showLogin();
    return;
  }
  resumeSession(kept);
  try {
    // Checks the kept token still works (a 401 here lands on the login page with a message).
    const who = await api.whoami();
    saveSession({ ...kept, role: who.role, scope: who.scope });
    startApp();
  } catch (err) {
    if (toApiError(err).reason !== SESSION_ENDED) {
      showLogin();
      report(err, byId('login-message'));
    }
  }
}

export function start(): void {
  onSessionEnd(sessionEnded);
  byId('login-form').addEventListener('submit', event => void login(event));
  byId('logout').addEventListener('click', () => void logout());
  byId('error-close').addEventListener('click', clearError);
  wireTokens();
  wireUsers();
  wireLogs();
  window.addEventListener('hashchange', route);
  pollWhileVisible();
  void showManagerInfo();
  void resume();
}
