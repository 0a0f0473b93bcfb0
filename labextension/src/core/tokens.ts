/**
 * Tokens of the manager: their state, the order they are listed in, and the new-token
 * form turned into a request (or into what is wrong with it).
 */

import { parseTime } from './versions';
import { IToken } from './types';

export type TokenState = 'active' | 'revoked' | 'expired';

export function tokenState(token: IToken): TokenState {
  if (token.revoked) {
    return 'revoked';
  }
  return token.active ? 'active' : 'expired';
}

/** Newest first; revoked and expired ones only when asked for. A new array. */
export function listedTokens(tokens: IToken[], showInactive: boolean): IToken[] {
  // The manager lists oldest first; reversing first keeps tokens of the same second newest first.
  return tokens
    .filter(t => showInactive || t.active)
    .reverse()
    .sort((a, b) => {
      const ta = parseTime(a.created);
      const tb = parseTime(b.created);
      return Number.isNaN(ta) || Number.isNaN(tb) ? 0 : tb - ta;
    });
}

/** The new-token form as typed. */
export interface ITokenForm {
  scope: string;
  /** The service an invoke token may call. */
  service: string;
  /** Days until it expires, as typed; blank for never. */
  days: string;
  note: string;
}

/** `POST /api/tokens` body. */
export interface ITokenRequest {
  scope: string;
  service?: string;
  /** Seconds. */
  expires_in?: number;
  note?: string;
}

const DAY = 24 * 3600;

/** The request the form asks for, or a sentence saying what to fix. */
export function tokenRequest(
  form: ITokenForm
): { request: ITokenRequest; problem?: undefined } | { problem: string } {
  const request: ITokenRequest = { scope: form.scope };
  if (form.scope === 'invoke') {
    if (!form.service) {
      return { problem: 'Choose the service the token may call.' };
    }
    request.service = form.service;
  }
  const days = form.days.trim();
  if (days) {
    const value = Number(days);
    if (!(value > 0) || !Number.isFinite(value)) {
      return {
        problem:
          'Expiry must be a number of days above 0, or empty for a token that never expires.'
      };
    }
    request.expires_in = Math.max(1, Math.round(value * DAY));
  }
  const note = form.note.trim();
  if (note) {
    request.note = note;
  }
  return { request };
}
