/**
 * The pure parts of a log view (the sidebar's logs tab, the dashboard's logs page):
 * whether to follow the end, which version to show, how much text to keep.
 */

import { sortVersionsNewestFirst } from './versions';
import { IService } from './types';

/** Lines asked for on every poll. */
export const LOG_TAIL = 500;

/** Lines of the tail asked for when a log starts being followed live. */
export const FOLLOW_TAIL = 200;

/** Characters a followed log keeps at most. */
export const MAX_LOG_CHARS = 2_000_000;

/**
 * `text`, or when longer than `max` its newest half from the first whole line on: a log
 * followed for hours must not eat the page's memory.
 */
export function trimLog(text: string, max: number = MAX_LOG_CHARS): string {
  if (text.length <= max) {
    return text;
  }
  const kept = text.slice(text.length - Math.floor(max / 2));
  const newline = kept.indexOf('\n');
  return newline >= 0 && newline < kept.length - 1 ? kept.slice(newline + 1) : kept;
}

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
