import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ApiError } from '../src/core/errors';
import { decideView } from '../src/core/state';
import { service, status } from './fixtures';

describe('decideView', () => {
  test('loading before the first status', () => {
    assert.equal(decideView({ status: null, services: null }).state, 'loading');
  });

  test('login when no manager is configured', () => {
    const v = decideView({
      status: status({ manager_url: null, public_url: null, logged_in: false, username: null, role: null, reachable: false, message: 'no manager configured yet', reason: 'not-logged-in' }),
      services: null
    });
    assert.equal(v.state, 'login');
    assert.equal(v.managerUrl, null);
    assert.equal(v.message, '');
  });

  test('login with the reason when the stored token was refused', () => {
    const v = decideView({
      status: status({ logged_in: false, reachable: true, message: 'the stored login for http://m is no longer valid: log in again', reason: 'not-logged-in' }),
      services: null
    });
    assert.equal(v.state, 'login');
    assert.match(v.message, /no longer valid/);
  });

  test('plain "not logged in to URL" gives no extra hint', () => {
    const v = decideView({
      status: status({ logged_in: false, message: 'not logged in to http://127.0.0.1:8765', reason: 'not-logged-in' }),
      services: null
    });
    assert.equal(v.state, 'login');
    assert.equal(v.message, '');
  });

  test('unreachable when logged in and the manager is down, with URL and message', () => {
    const v = decideView({
      status: status({ reachable: false, message: 'connection refused', reason: 'manager-unreachable' }),
      services: null
    });
    assert.equal(v.state, 'unreachable');
    assert.equal(v.managerUrl, 'http://127.0.0.1:8765');
    assert.match(v.message, /connection refused/i);
  });

  test('unreachable too when not logged in and the configured manager is down', () => {
    const v = decideView({
      status: status({ logged_in: false, reachable: false, message: 'connection refused', reason: 'manager-unreachable' }),
      services: null
    });
    assert.equal(v.state, 'unreachable');
  });

  test('the public URL is the one shown', () => {
    const v = decideView({
      status: status({ manager_url: 'http://manager:8765', public_url: 'https://deploy.example' }),
      services: []
    });
    assert.equal(v.managerUrl, 'https://deploy.example');
  });

  test('empty and list from the services', () => {
    assert.equal(decideView({ status: status(), services: [] }).state, 'empty');
    assert.equal(decideView({ status: status(), services: [service('iris')] }).state, 'list');
    assert.equal(decideView({ status: status(), services: null }).state, 'loading');
  });

  test('errors of the status request', () => {
    assert.equal(decideView({ status: null, statusError: new ApiError(0, 'network-error', 'no answer'), services: null }).state, 'unreachable');
    assert.equal(decideView({ status: null, statusError: new ApiError(404, '', 'HTTP 404'), services: null }).state, 'error');
    assert.equal(decideView({ status: null, statusError: new ApiError(500, '', 'boom'), services: null }).state, 'error');
    assert.equal(decideView({ status: status(), statusError: new ApiError(401, 'not-logged-in', 'x'), services: null }).state, 'login');
  });

  test('errors of the services request', () => {
    const s = status();
    assert.equal(decideView({ status: s, services: null, servicesError: new ApiError(502, 'manager-unreachable', 'down') }).state, 'unreachable');
    assert.equal(decideView({ status: s, services: null, servicesError: new ApiError(401, 'not-logged-in', 'expired') }).state, 'login');
    const forbidden = decideView({ status: s, services: null, servicesError: new ApiError(403, 'forbidden', 'no') });
    assert.equal(forbidden.state, 'error');
    assert.match(forbidden.message, /Not allowed: no/);
  });

  test('an error status reason other than unreachable is an error', () => {
    const v = decideView({ status: status({ reachable: false, message: 'the manager failed: 500', reason: 'manager-error' }), services: null });
    assert.equal(v.state, 'error');
  });

  test('the login form when asked for, whatever else', () => {
    assert.equal(decideView({ status: status({ reachable: false, reason: 'manager-unreachable' }), services: null, wantsLogin: true }).state, 'login');
  });
});
