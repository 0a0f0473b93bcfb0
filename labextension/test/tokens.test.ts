import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { listedTokens, tokenRequest, tokenState } from '../src/core/tokens';
import { IToken } from '../src/core/types';

function token(id: string, patch: Partial<IToken> = {}): IToken {
  return {
    id,
    username: 'admin',
    scope: 'invoke',
    service: 'iris',
    note: null,
    created: '2024-05-01T10:00:00Z',
    expires_at: null,
    revoked: false,
    active: true,
    ...patch
  };
}

describe('tokens', () => {
  test('state: revoked before expired', () => {
    assert.equal(tokenState(token('a')), 'active');
    assert.equal(tokenState(token('a', { active: false })), 'expired');
    assert.equal(tokenState(token('a', { active: false, revoked: true })), 'revoked');
  });

  test('listed newest first, inactive ones only when asked', () => {
    const tokens = [
      token('old', { created: '2024-05-01T10:00:00Z' }),
      token('gone', { created: '2024-05-02T10:00:00Z', active: false, revoked: true }),
      token('same-1', { created: '2024-05-03T10:00:00Z' }),
      token('same-2', { created: '2024-05-03T10:00:00Z' })
    ];
    assert.deepEqual(listedTokens(tokens, false).map(t => t.id), ['same-2', 'same-1', 'old']);
    assert.deepEqual(listedTokens(tokens, true).map(t => t.id), ['same-2', 'same-1', 'gone', 'old']);
    assert.equal(tokens[0].id, 'old', 'the given list is left as it was');
  });
});

describe('tokenRequest', () => {
  const form = { scope: 'invoke', service: 'iris', days: '', note: '' };

  test('an invoke token names its service', () => {
    assert.deepEqual(tokenRequest(form), { request: { scope: 'invoke', service: 'iris' } });
    assert.deepEqual(tokenRequest({ ...form, service: '' }), { problem: 'Choose the service the token may call.' });
  });

  test('a deploy token has no service', () => {
    assert.deepEqual(tokenRequest({ ...form, scope: 'deploy' }), { request: { scope: 'deploy' } });
  });

  test('expiry in days becomes seconds; anything but a positive number is refused', () => {
    assert.deepEqual(tokenRequest({ ...form, days: ' 7 ' }), { request: { scope: 'invoke', service: 'iris', expires_in: 604800 } });
    assert.deepEqual(tokenRequest({ ...form, days: '0.5' }), { request: { scope: 'invoke', service: 'iris', expires_in: 43200 } });
    for (const days of ['0', '-1', 'soon', 'Infinity']) {
      assert.match(tokenRequest({ ...form, days }).problem || '', /^Expiry must be a number of days above 0/, days);
    }
  });

  test('a note is trimmed and left out when blank', () => {
    assert.deepEqual(tokenRequest({ ...form, note: '  for the app ' }), { request: { scope: 'invoke', service: 'iris', note: 'for the app' } });
    assert.equal('note' in (tokenRequest({ ...form, note: '   ' }) as { request: object }).request, false);
  });
});
