/**
 * The tokens view: create one (its secret shown once, with a copy button), list and revoke.
 */

import { revokeConfirmation } from '../core/confirm';
import { localTime } from '../core/format';
import { listedTokens, tokenRequest, tokenState } from '../core/tokens';
import { IToken } from '../core/types';
import { api } from './api';
import { confirmAction } from './dialog';
import { byId, el, show } from './dom';
import { notify, report } from './messages';
import { refreshNow } from './polling';
import { redraw } from './redraw';
import { endSession, session } from './session';
import { timeElement } from './times';

let tokens: IToken[] = [];

export async function refreshTokens(): Promise<void> {
  const [list, names] = await Promise.all([api.tokens(), api.serviceNames()]);
  tokens = list;
  fillServiceChoices(names);
  renderTokens();
}

/** The services an invoke token can be made for; the choice made is kept when still there. */
export function fillServiceChoices(names: string[]): void {
  const select = byId<HTMLSelectElement>('token-service');
  const current = Array.from(select.options).map(o => o.value);
  if (current.join('\n') === names.join('\n') && names.length) {
    return;
  }
  const chosen = select.value;
  select.replaceChildren(...names.map(n => el('option', { value: n, text: n })));
  if (names.includes(chosen)) {
    select.value = chosen;
  }
  if (!names.length) {
    select.append(el('option', { value: '', text: 'no services yet' }));
  }
}

function renderTokens(): void {
  const shown = listedTokens(
    tokens,
    byId<HTMLInputElement>('tokens-show-inactive').checked
  );
  const own = session()?.token_id ?? null;
  const body = byId<HTMLTableElement>('tokens-table').tBodies[0];
  redraw('tokens', body, { shown, own }, () => {
    if (!shown.length) {
      return [el('tr', {}, el('td', { colspan: '9', class: 'muted', text: 'No tokens.' }))];
    }
    return shown.map(t => tokenRow(t, t.id === own));
  });
}

function tokenRow(token: IToken, own: boolean): HTMLElement {
  const state = tokenState(token);
  return el(
    'tr',
    { dataset: { tokenId: token.id }, class: token.active ? '' : 'inactive' },
    el(
      'td',
      {},
      el('code', { text: token.id }),
      own ? el('span', { class: 'badge badge-main', text: 'this session' }) : null
    ),
    el('td', { text: token.username }),
    el('td', {}, el('span', { class: 'badge badge-scope', text: token.scope })),
    el('td', { text: token.service || '-' }),
    el('td', { text: token.note || '' }),
    el('td', {}, timeElement(token.created)),
    el('td', { text: token.expires_at ? localTime(token.expires_at) : 'never' }),
    el('td', {}, el('span', { class: `badge badge-${state}`, text: state })),
    el(
      'td',
      { class: 'actions' },
      token.active
        ? el('button', {
            type: 'button',
            class: 'danger',
            dataset: { key: `revoke:${token.id}` },
            'aria-label': `Revoke token ${token.id}`,
            text: 'Revoke',
            on: { click: () => void revoke(token) }
          })
        : null
    )
  );
}

async function create(event: Event): Promise<void> {
  event.preventDefault();
  const message = byId('token-form-message');
  message.textContent = '';
  const asked = tokenRequest({
    scope: byId<HTMLSelectElement>('token-scope').value,
    service: byId<HTMLSelectElement>('token-service').value,
    days: byId<HTMLInputElement>('token-days').value,
    note: byId<HTMLInputElement>('token-note').value
  });
  if (asked.problem !== undefined) {
    message.textContent = asked.problem;
    return;
  }
  const button = byId<HTMLButtonElement>('token-create');
  button.disabled = true;
  try {
    const created = await api.createToken(asked.request);
    showSecret(created.token);
    byId<HTMLInputElement>('token-note').value = '';
    await refreshNow();
  } catch (err) {
    report(err, message);
  } finally {
    button.disabled = false;
  }
}

function showSecret(secret: string): void {
  const input = byId<HTMLInputElement>('token-secret-value');
  input.value = secret;
  byId('token-copy-status').textContent = '';
  show(byId('token-secret'), true);
  input.select();
  byId('token-copy').focus();
}

/** Off the page as soon as the user is done: it must not linger for the next person at the screen. */
export function hideSecret(refocus: boolean): void {
  byId<HTMLInputElement>('token-secret-value').value = '';
  show(byId('token-secret'), false);
  if (refocus) {
    byId('token-create').focus();
  }
}

async function copySecret(): Promise<void> {
  const input = byId<HTMLInputElement>('token-secret-value');
  const status = byId('token-copy-status');
  try {
    await navigator.clipboard.writeText(input.value);
    status.textContent = 'Copied to the clipboard.';
  } catch {
    // The clipboard API needs a secure context (https or localhost); fall back to the selection.
    input.select();
    const copied = typeof document.execCommand === 'function' && document.execCommand('copy');
    status.textContent = copied
      ? 'Copied to the clipboard.'
      : 'Select the token and copy it by hand (Ctrl+C).';
  }
}

async function revoke(token: IToken): Promise<void> {
  const own = token.id === session()?.token_id;
  if (!(await confirmAction(revokeConfirmation(token, own)))) {
    return;
  }
  try {
    await api.revokeToken(token.id);
    if (own) {
      endSession("You revoked this session's token and are logged out.");
      return;
    }
    notify(`Token ${token.id} is revoked.`);
    await refreshNow();
  } catch (err) {
    report(err);
  }
}

function scopeChanged(): void {
  byId<HTMLSelectElement>('token-service').disabled =
    byId<HTMLSelectElement>('token-scope').value !== 'invoke';
}

export function wireTokens(): void {
  byId('token-form').addEventListener('submit', event => void create(event));
  byId('token-scope').addEventListener('change', scopeChanged);
  byId('token-copy').addEventListener('click', () => void copySecret());
  byId('token-secret-done').addEventListener('click', () => hideSecret(true));
  byId('tokens-show-inactive').addEventListener('change', renderTokens);
  scopeChanged();
}
