/**
 * Actions on services and versions: which ones a version offers, how each reaches the
 * API, and what is said while and after it runs. The sidebar and the dashboard share it.
 */

import { ApiError } from './errors';
import { canStop, normalizeStatus } from './status';
import { IService, IVersion, LifecycleAction } from './types';

export type ActionKind = 'promote' | LifecycleAction | 'delete';

/** The calls an action needs, whether through the server extension or to the manager itself. */
export interface IActionApi {
  promote(name: string, version: string): Promise<unknown>;
  act(
    name: string,
    action: LifecycleAction,
    version?: string | null
  ): Promise<unknown>;
  deleteService(name: string): Promise<unknown>;
  deleteVersion(name: string, version: string): Promise<unknown>;
}

/** The key of what an action runs on (`name` or `name/version`), to mark it busy. */
export function targetKey(name: string, version?: string | null): string {
  return version ? `${name}/${version}` : name;
}

/** What an action runs on, as a person reads it: "iris 0.1.2", or "iris". */
export function targetLabel(name: string, version?: string | null): string {
  return version ? `${name} ${version}` : name;
}

/** Run `action` on a service (`version` null) or on one version. */
export function performAction(
  api: IActionApi,
  action: ActionKind,
  name: string,
  version: string | null = null
): Promise<unknown> {
  switch (action) {
    case 'promote':
      if (!version) {
        return Promise.reject(
          new ApiError(422, 'invalid-input', 'no version to promote')
        );
      }
      return api.promote(name, version);
    case 'delete':
      return version ? api.deleteVersion(name, version) : api.deleteService(name);
    default:
      return api.act(name, action, version);
  }
}

/** The verb of "Could not … iris". */
export const ACTION_VERBS: Record<ActionKind, string> = {
  promote: 'promote',
  stop: 'stop',
  start: 'start',
  restart: 'restart',
  delete: 'delete'
};

const LABELS: Record<ActionKind, string> = {
  promote: 'Promote',
  stop: 'Stop',
  start: 'Start',
  restart: 'Restart',
  delete: 'Delete'
};

/** The action's button. */
export function actionLabel(action: ActionKind): string {
  return LABELS[action];
}

const BUSY: Record<ActionKind, string> = {
  promote: 'Promoting…',
  stop: 'Stopping…',
  start: 'Starting…',
  restart: 'Restarting…',
  delete: 'Deleting…'
};

/** What the button of a running action says instead of its name. */
export function busyLabel(action: ActionKind): string {
  return BUSY[action];
}

const DONE: Record<ActionKind, string> = {
  promote: 'is now the main version',
  stop: 'is stopped',
  start: 'is started',
  restart: 'is restarted',
  delete: 'is deleted'
};

/** "iris 0.1.2 is now the main version.", "Service iris is deleted." */
export function doneMessage(
  action: ActionKind,
  name: string,
  version: string | null = null
): string {
  const target = version ? targetLabel(name, version) : `Service ${name}`;
  return `${target} ${DONE[action]}.`;
}

/**
 * The actions a version offers, in the order they are shown: only those the manager
 * can carry out from the version's state.
 */
export function versionActions(
  service: IService,
  version: IVersion
): ActionKind[] {
  const isMain = version.version === service.main_version;
  const actions: ActionKind[] = [];
  // A version still building has nothing to start yet: promoting it could only fail.
  if (!isMain && normalizeStatus(version.status) !== 'building') {
    actions.push('promote');
  }
  actions.push(canStop(version.status) ? 'stop' : 'start');
  // The manager refuses to delete main while other versions exist (409); the only
  // version may go, and takes its service with it.
  if (!isMain || service.versions.length === 1) {
    actions.push('delete');
  }
  return actions;
}
