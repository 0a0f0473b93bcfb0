/**
 * The sidebar's state and what changes it: polling, login, logout, actions.
 *
 * It knows the API only through `IDeployApi`, so the tests drive it with a fake.
 */

import {
  ACTION_VERBS,
  ActionKind,
  doneMessage,
  IActionApi,
  performAction,
  targetKey,
  targetLabel
} from './actions';
import { describeDiff, diffServices, sameStatus } from './diff';
import { ApiError, describeActionError, describeError, toApiError } from './errors';
import { IScheduler, Poller } from './poller';
import { decideView, IView } from './state';
import { ICredentials, IService, IStatus } from './types';
import { sortServices } from './versions';

export interface IDeployApi extends IActionApi {
  status(): Promise<IStatus>;
  login(credentials: ICredentials): Promise<IStatus>;
  logout(): Promise<IStatus>;
  services(): Promise<IService[]>;
}

/** What the view draws; a new object after every change. */
export interface ISidebarSnapshot {
  view: IView;
  status: IStatus | null;
  /** By name; the same array as before when nothing in it changed. */
  services: IService[];
  /** Targets (`name` or `name/version`) with an action in flight. */
  busy: ReadonlySet<string>;
  /** The last action's failure, in plain words ('' when none). */
  actionError: string;
  /** The last login's failure ('' when none). */
  loginError: string;
  loggingIn: boolean;
  /** A polite sentence for screen readers about what changed. */
  announcement: string;
  /** When the last refresh ended (ms since the epoch), null before. */
  updated: number | null;
}

export const REFRESH_INTERVAL = 5000;

export class SidebarModel {
  constructor(
    api: IDeployApi,
    options: { interval?: number; scheduler?: IScheduler; now?: () => number } = {}
  ) {
    this._api = api;
    this._now = options.now || (() => Date.now());
    this._poller = new Poller({
      task: () => this._refreshOnce(),
      interval: options.interval ?? REFRESH_INTERVAL,
      scheduler: options.scheduler
    });
    this._snapshot = {
      view: decideView({ status: null, services: null }),
      status: null,
      services: [],
      busy: new Set(),
      actionError: '',
      loginError: '',
      loggingIn: false,
      announcement: '',
      updated: null
    };
  }

  get snapshot(): ISidebarSnapshot {
    return this._snapshot;
  }

  /** The poller (for tests and for the refresh command). */
  get poller(): Poller {
    return this._poller;
  }

  /** Call `fn` after every change; returns the unsubscribe function. */
  subscribe(fn: (snapshot: ISidebarSnapshot) => void): () => void {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  /** Poll while visible; a refresh happens at once when it becomes visible. */
  setVisible(visible: boolean): void {
    if (visible) {
      this._poller.start();
    } else {
      this._poller.stop();
    }
  }

  /** Refresh now (joined with one in flight, never overlapping it). */
  refresh(): Promise<void> {
    return this._poller.refresh();
  }

  /** Show the login form (e.g. to use another manager) or go back from it. */
  showLogin(show: boolean): void {
    this._wantsLogin = show;
    this._update({ loginError: show ? this._snapshot.loginError : '' });
  }

  async login(credentials: ICredentials): Promise<boolean> {
    if (this._snapshot.loggingIn) {
      return false;
    }
    this._update({ loggingIn: true, loginError: '' });
    try {
      const status = await this._api.login(credentials);
      this._status = status;
      this._statusError = null;
      this._wantsLogin = false;
      this._services = null;
      this._servicesError = null;
      this._update({ loggingIn: false, loginError: '' });
    } catch (err) {
      const error = toApiError(err);
      this._update({
        loggingIn: false,
        loginError: describeError(error, credentials.url.trim() || null)
      });
      return false;
    }
    await this.refresh();
    return true;
  }

  async logout(): Promise<void> {
    try {
      this._status = await this._api.logout();
      this._statusError = null;
      this._services = null;
      this._servicesError = null;
      this._update({ actionError: '' });
    } catch (err) {
      this._update({
        actionError: describeActionError(
          'log out',
          'of the manager',
          err,
          this._snapshot.view.managerUrl
        )
      });
    }
  }

  /**
   * Run an action (confirmed beforehand by the caller); its failure lands in
   * `actionError`. A refresh follows either way. Returns whether it succeeded.
   */
  async run(
    action: ActionKind,
    name: string,
    version: string | null = null
  ): Promise<boolean> {
    const key = targetKey(name, version);
    if (this._snapshot.busy.has(key)) {
      return false;
    }
    const busy = new Set(this._snapshot.busy);
    busy.add(key);
    this._update({ busy, actionError: '' });
    let ok = true;
    try {
      await performAction(this._api, action, name, version);
    } catch (err) {
      ok = false;
      this._update({
        actionError: describeActionError(
          ACTION_VERBS[action],
          targetLabel(name, version),
          err,
          this._snapshot.view.managerUrl
        )
      });
    }
    const after = new Set(this._snapshot.busy);
    after.delete(key);
    this._update({
      busy: after,
      announcement: ok
        ? doneMessage(action, name, version)
        : this._snapshot.announcement
    });
    await this.refresh();
    return ok;
  }

  dismissError(): void {
    this._update({ actionError: '' });
  }

  dispose(): void {
    this._poller.dispose();
    this._listeners.clear();
  }

  private async _refreshOnce(): Promise<void> {
    let status: IStatus | null = this._status;
    let statusError: ApiError | null = null;
    try {
      status = await this._api.status();
    } catch (err) {
      statusError = toApiError(err);
    }
    let services = this._services;
    let servicesError: ApiError | null = null;
    if (!statusError && status && status.logged_in && status.reachable) {
      try {
        services = sortServices(await this._api.services());
      } catch (err) {
        servicesError = toApiError(err);
      }
    } else if (!statusError) {
      services = null;
    }

    let announcement = '';
    let changed = !sameStatus(this._status, status);
    if (services !== null && services !== this._services) {
      const diff = diffServices(this._services, services);
      if (!diff.changed) {
        services = this._services;
      } else {
        changed = true;
        if (this._services !== null) {
          announcement = describeDiff(diff).join(' ');
        }
      }
    } else if (services !== this._services) {
      changed = true;
    }
    changed =
      changed ||
      !sameError(statusError, this._statusError) ||
      !sameError(servicesError, this._servicesError);

    this._status = status;
    this._statusError = statusError;
    this._services = services;
    this._servicesError = servicesError;
    if (changed || this._snapshot.updated === null) {
      this._update({
        announcement: announcement || this._snapshot.announcement,
        updated: this._now()
      });
    }
  }

  private _update(patch: Partial<ISidebarSnapshot>): void {
    const view = decideView({
      status: this._status,
      statusError: this._statusError,
      services: this._services,
      servicesError: this._servicesError,
      wantsLogin: this._wantsLogin
    });
    this._snapshot = {
      ...this._snapshot,
      ...patch,
      view,
      status: this._status,
      services: this._services || EMPTY
    };
    for (const fn of [...this._listeners]) {
      try {
        fn(this._snapshot);
      } catch (err) {
        console.error('jupyter-deploy: a sidebar listener failed', err);
      }
    }
  }

  private _api: IDeployApi;
  private _now: () => number;
  private _poller: Poller;
  private _snapshot: ISidebarSnapshot;
  private _listeners = new Set<(snapshot: ISidebarSnapshot) => void>();
  private _status: IStatus | null = null;
  private _statusError: ApiError | null = null;
  private _services: IService[] | null = null;
  private _servicesError: ApiError | null = null;
  private _wantsLogin = false;
}

const EMPTY: IService[] = [];

function sameError(a: ApiError | null, b: ApiError | null): boolean {
  if (a === null || b === null) {
    return a === b;
  }
  return a.status === b.status && a.reason === b.reason && a.message === b.message;
}
