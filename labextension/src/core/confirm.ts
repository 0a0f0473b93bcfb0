/**
 * The words of the confirmation dialogs (the dialogs themselves are JupyterLab's in the
 * sidebar, a `<dialog>` in the dashboard).
 */

import { ActionKind, targetLabel } from './actions';
import { IService, IToken } from './types';

export interface IConfirmation {
  title: string;
  body: string;
  /** The OK button's label. */
  accept: string;
  /** Destructive: the OK button is marked as a warning. */
  warn: boolean;
}

/** Before `action` on `service` (`version` null: the whole service). */
export function confirmation(
  action: ActionKind,
  service: IService,
  version: string | null
): IConfirmation {
  const name = service.name;
  const main = service.main_version || null;
  const target = targetLabel(name, version);
  switch (action) {
    case 'promote':
      return {
        title: `Promote ${target}?`,
        body:
          `Calls to ${name} will go to version ${version}` +
          (main ? ` instead of ${main}` : '') +
          '. It is started if needed and must pass its health check first; ' +
          'calls in flight finish, and the current main keeps running for a rollback.',
        accept: 'Promote',
        warn: false
      };
    case 'stop':
      return {
        title: `Stop ${target}?`,
        body: version
          ? `Version ${version} of ${name} stops answering calls` +
            (version === main ? `, at its own URL and at the service's,` : '') +
            ' until it is started again.'
          : `Every running version of ${name} stops; calls to it fail until it is started again.`,
        accept: 'Stop',
        warn: true
      };
    case 'start':
      return {
        title: `Start ${target}?`,
        body: version
          ? `Version ${version} of ${name} is started and answers at /services/${name}/versions/${version}/.`
          : `The main version of ${name} is started and answers at /services/${name}/.`,
        accept: 'Start',
        warn: false
      };
    case 'restart':
      return {
        title: `Restart ${target}?`,
        body: `${target} stops and starts again; calls to it fail for that moment.`,
        accept: 'Restart',
        warn: true
      };
    case 'delete':
      if (!version) {
        return {
          title: `Delete ${name}?`,
          body:
            `Every version of ${name} is stopped and removed, with its images, ` +
            'and its invoke tokens are revoked. This cannot be undone.',
          accept: 'Delete',
          warn: true
        };
      }
      return {
        title: `Delete ${target}?`,
        body:
          service.versions.length === 1
            ? `${version} is the only version, so the whole service ${name} is removed, ` +
              'with its image and invoke tokens. This cannot be undone.'
            : `Version ${version} of ${name} is stopped and removed with its image. This cannot be undone.`,
        accept: 'Delete',
        warn: true
      };
  }
}

/** "the invoke token abc of iris", "the deploy token abc". */
export function tokenSubject(token: IToken): string {
  return token.scope === 'invoke'
    ? `the invoke token ${token.id} of ${token.service}`
    : `the ${token.scope} token ${token.id}`;
}

/** Before revoking a token; `own`: the token the asking session itself uses. */
export function revokeConfirmation(token: IToken, own: boolean): IConfirmation {
  return {
    title: `Revoke ${token.id}?`,
    body: own
      ? 'This is the token of this session: revoking it logs you out.'
      : `Calls made with ${tokenSubject(token)} are refused from now on. This cannot be undone.`,
    accept: 'Revoke',
    warn: true
  };
}

/** Before deleting a user. */
export function deleteUserConfirmation(username: string): IConfirmation {
  return {
    title: `Delete user ${username}?`,
    body:
      `${username} can no longer log in, and every token they hold (invoke tokens they ` +
      'handed out too) is revoked at once. This cannot be undone.',
    accept: 'Delete user',
    warn: true
  };
}
