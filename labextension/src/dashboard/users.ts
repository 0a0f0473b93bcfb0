/**
 * The users view (admins with an admin token only): create, list, delete.
 */

import { deleteUserConfirmation } from '../core/confirm';
import { ApiError } from '../core/errors';
import { loginProblem } from '../core/login';
import { IUser } from '../core/types';
import { api } from './api';
import { confirmAction } from './dialog';
import { byId, el, show } from './dom';
import { notify, report } from './messages';
import { refreshNow } from './polling';
import { redraw } from './redraw';
import { mayManageUsers, session } from './session';
import { timeElement } from './times';

let users: IUser[] = [];
/** False once /api/users answered 404: a manager without user management. */
let usersApi = true;

/** Whether the Users view can be shown to this session. */
export function usersAvailable(): boolean {
  return mayManageUsers() && usersApi;
}

function noUsersApi(): void {
  usersApi = false;
  show(byId('users-tab'), false);
}

/** Learn once whether this manager has user management, so the Users tab is not a dead end. */
export async function probeUsers(): Promise<void> {
  try {
    await api.users();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      noUsersApi();
    }
  }
}

export async function refreshUsers(): Promise<void> {
  try {
    users = await api.users();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      // Hide the tab instead of showing an error every few seconds.
      noUsersApi();
      location.hash = '#services';
      return;
    }
    throw err;
  }
  const me = session()?.username ?? null;
  redraw('users', byId<HTMLTableElement>('users-table').tBodies[0], { users, me }, () =>
    users.map(u => userRow(u, u.username === me))
  );
}

function userRow(user: IUser, me: boolean): HTMLElement {
  return el(
    'tr',
    { dataset: { username: user.username } },
    el(
      'td',
      {},
      user.username,
      me ? el('span', { class: 'badge badge-main', text: 'you' }) : null
    ),
    el('td', {}, el('span', { class: 'badge badge-scope', text: user.role })),
    el('td', {}, timeElement(user.created)),
    el(
      'td',
      { class: 'actions' },
      me
        ? null
        : el('button', {
            type: 'button',
            class: 'danger',
            dataset: { key: `delete-user:${user.username}` },
            'aria-label': `Delete user ${user.username}`,
            text: 'Delete',
            on: { click: () => void remove(user.username) }
          })
    )
  );
}

async function create(event: Event): Promise<void> {
  event.preventDefault();
  const message = byId('user-form-message');
  message.textContent = '';
  const user = {
    username: byId<HTMLInputElement>('user-name').value.trim(),
    password: byId<HTMLInputElement>('user-password').value,
    role: byId<HTMLSelectElement>('user-role').value
  };
  const problem = loginProblem(user);
  if (problem) {
    message.textContent = problem;
    return;
  }
  const button = byId<HTMLButtonElement>('user-create');
  button.disabled = true;
  try {
    await api.createUser(user);
    byId<HTMLInputElement>('user-name').value = '';
    byId<HTMLInputElement>('user-password').value = '';
    notify(`User ${user.username} is created.`);
    await refreshNow();
  } catch (err) {
    report(err, message);
  } finally {
    button.disabled = false;
  }
}

async function remove(username: string): Promise<void> {
  if (!(await confirmAction(deleteUserConfirmation(username)))) {
    return;
  }
  try {
    await api.deleteUser(username);
    notify(`User ${username} is deleted.`);
    await refreshNow();
  } catch (err) {
    report(err);
  }
}

export function wireUsers(): void {
  byId('user-form').addEventListener('submit', event => void create(event));
}
