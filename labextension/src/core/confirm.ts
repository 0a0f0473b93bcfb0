/**
 * The words of the confirmation dialogs (the dialogs themselves are JupyterLab's).
 */

export type ConfirmedAction = 'promote' | 'stop' | 'delete';

export interface IConfirmation {
  title: string;
  body: string;
  /** The OK button's label. */
  accept: string;
  /** Destructive: the OK button is marked as a warning. */
  warn: boolean;
}

/** `version` null: the whole service. */
export function confirmation(
  action: ConfirmedAction,
  service: string,
  version: string | null,
  mainVersion: string | null = null
): IConfirmation {
  switch (action) {
    case 'promote':
      return {
        title: `Promote ${service} ${version}?`,
        body:
          `Calls to ${service} will go to version ${version}` +
          (mainVersion ? ` instead of ${mainVersion}` : '') +
          '. It is started if needed and must pass its health check first; ' +
          'the current main keeps running for a rollback.',
        accept: 'Promote',
        warn: false
      };
    case 'stop':
      return version
        ? {
            title: `Stop ${service} ${version}?`,
            body: `Version ${version} of ${service} stops answering calls until it is started again.`,
            accept: 'Stop',
            warn: true
          }
        : {
            title: `Stop ${service}?`,
            body: `Every running version of ${service} stops; calls to it fail until it is started again.`,
            accept: 'Stop',
            warn: true
          };
    case 'delete':
      return version
        ? {
            title: `Delete ${service} ${version}?`,
            body: `Version ${version} of ${service} is stopped and removed with its image. This cannot be undone.`,
            accept: 'Delete',
            warn: true
          }
        : {
            title: `Delete ${service}?`,
            body: `Every version of ${service} is stopped and removed, with its images. This cannot be undone.`,
            accept: 'Delete',
            warn: true
          };
  }
}
