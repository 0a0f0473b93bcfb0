/**
 * The logs tab's pure parts: whether to follow the end, and which version to show.
 */

import { sortVersionsNewestFirst } from './versions';
import { IService } from './types';

/** Lines asked for on every poll. */
export const LOG_TAIL = 500;

/** The view is at (or within `slack` px of) its end: new text should keep it there. */
export function isAtBottom(
  scrollTop: number,
  scrollHeight: number,
  clientHeight: number,
  slack = 8
): boolean {
  return scrollHeight - scrollTop - clientHeight <= slack;
}

export interface IVersionChoice {
  /** '' stands for "whatever is main" (no `version` in the request). */
  value: string;
  label: string;
}

/** The version selector's options: main first, then every version newest first. */
export function versionChoices(service: IService | null): IVersionChoice[] {
  const main = service?.main_version || null;
  const choices: IVersionChoice[] = [
    { value: '', label: main ? `main (${main})` : 'main' }
  ];
  if (service) {
    for (const v of sortVersionsNewestFirst(service.versions)) {
      choices.push({
        value: v.version,
        label: v.version === main ? `${v.version} (main)` : v.version
      });
    }
  }
  return choices;
}

/** What the logs `<pre>` says when there is no text. */
export function emptyLogText(name: string, version: string | null): string {
  return version
    ? `No log lines yet for ${name} ${version}.`
    : `No log lines yet for ${name}.`;
}
