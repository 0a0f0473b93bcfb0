/**
 * The logs view: a service's log followed live over one streamed request, until the
 * view is left (which aborts it).
 */

import { isAbort, toApiError } from '../core/errors';
import {
  FOLLOW_TAIL,
  isAtBottom,
  MAX_LOG_CHARS,
  trimLog,
  versionChoices
} from '../core/logs';
import { api } from './api';
import { byId, el, show } from './dom';
import { report } from './messages';
import { currentRoute, logsHash } from './routes';
import { SESSION_ENDED } from './session';

/** Within this many pixels of the end counts as reading the end: new lines keep it there. */
const FOLLOW_SLACK = 40;

type LogState = 'connecting' | 'live' | 'ended' | 'error';

interface IFollowed {
  name: string;
  version: string;
  controller: AbortController;
}

let followed: IFollowed | null = null;
/** Characters in the output, counted rather than read back from the DOM on every chunk. */
let shownChars = 0;

function output(): HTMLPreElement {
  return byId<HTMLPreElement>('log-output');
}

function clearOutput(): void {
  output().textContent = '';
  shownChars = 0;
}

/** Show `name`'s log ('' version: main's); nothing to do when it is already shown. */
export function openLogs(name: string | undefined, version: string): void {
  if (!name) {
    location.hash = '#services';
    return;
  }
  if (followed && followed.name === name && followed.version === version) {
    return;
  }
  stopLog();
  byId('logs-heading').textContent = `Logs of ${name}`;
  clearOutput();
  void follow(name, version);
  void fillVersions(name, version);
}

export function stopLog(): void {
  followed?.controller.abort();
  followed = null;
}

function setStatus(text: string, state: LogState): void {
  const status = byId('log-status');
  status.textContent = text;
  status.dataset.state = state;
  show(byId('log-reconnect'), state === 'ended' || state === 'error');
}

function appendLog(text: string): void {
  const pre = output();
  const atBottom = isAtBottom(pre.scrollTop, pre.scrollHeight, pre.clientHeight, FOLLOW_SLACK);
  pre.append(text);
  shownChars += text.length;
  if (shownChars > MAX_LOG_CHARS) {
    const kept = trimLog(pre.textContent || '', MAX_LOG_CHARS);
    pre.textContent = kept;
    shownChars = kept.length;
  }
  if (byId<HTMLInputElement>('log-autoscroll').checked && atBottom) {
    pre.scrollTop = pre.scrollHeight;
  }
}

async function fillVersions(name: string, version: string): Promise<void> {
  const select = byId<HTMLSelectElement>('log-version');
  select.replaceChildren(...versionOptions(versionChoices(null)));
  select.value = version;
  try {
    const service = await api.service(name);
    select.replaceChildren(...versionOptions(versionChoices(service)));
    select.value = version;
  } catch (err) {
    report(err);
  }
}

function versionOptions(choices: Array<{ value: string; label: string }>): HTMLElement[] {
  return choices.map(c => el('option', { value: c.value, text: c.label }));
}

/** Stream the tail then new text, until the view is left or the stream ends. */
async function follow(name: string, version: string): Promise<void> {
  const controller = new AbortController();
  followed = { name, version, controller };
  setStatus('Connecting…', 'connecting');
  try {
    const reader = await api.followLog(name, version, FOLLOW_TAIL, controller.signal);
    setStatus('Following live', 'live');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      appendLog(value);
    }
    setStatus('The stream ended: the version stopped or was removed.', 'ended');
  } catch (err) {
    if (controller.signal.aborted || isAbort(err) || toApiError(err).reason === SESSION_ENDED) {
      return;
    }
    setStatus(`Not following: ${toApiError(err).message}`, 'error');
  }
}

function reconnect(): void {
  if (!followed) {
    return;
  }
  const { name, version } = followed;
  followed = null;
  clearOutput();
  void follow(name, version);
}

function chooseVersion(): void {
  const name = currentRoute().args[0];
  if (name) {
    location.hash = logsHash(name, byId<HTMLSelectElement>('log-version').value);
  }
}

export function wireLogs(): void {
  byId('log-version').addEventListener('change', chooseVersion);
  byId('log-reconnect').addEventListener('click', reconnect);
  byId('log-clear').addEventListener('click', clearOutput);
}
