import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  apiMessage,
  ApiError,
  capitalize,
  describeActionError,
  describeError,
  errorFromResponse,
  isAbort,
  kindOf,
  toApiError,
  unreachableDetail
} from '../src/core/errors';

describe('kindOf', () => {
  test('the reason decides first', () => {
    assert.equal(kindOf(502, 'manager-unreachable'), 'unreachable');
    assert.equal(kindOf(401, 'not-logged-in'), 'not-logged-in');
    assert.equal(kindOf(401, 'bad-credentials'), 'bad-credentials');
    assert.equal(kindOf(403, 'forbidden'), 'forbidden');
    assert.equal(kindOf(404, 'unknown-service'), 'not-found');
    assert.equal(kindOf(404, 'unknown-version'), 'not-found');
    assert.equal(kindOf(422, 'invalid-input'), 'invalid-input');
  });

  test('then the HTTP status', () => {
    assert.equal(kindOf(0, ''), 'unreachable');
    assert.equal(kindOf(401, ''), 'not-logged-in');
    assert.equal(kindOf(403, 'xsrf'), 'forbidden');
    assert.equal(kindOf(409, 'conflict'), 'conflict');
    assert.equal(kindOf(502, 'manager-error'), 'server');
    assert.equal(kindOf(500, ''), 'server');
    assert.equal(kindOf(418, ''), 'unknown');
  });

  test("a 404 without a reason is Jupyter's page-not-found: no server extension", () => {
    assert.equal(kindOf(404, ''), 'no-extension');
  });
});

describe('errorFromResponse', () => {
  test('reads message and reason from the JSON body', () => {
    const e = errorFromResponse(404, { message: "no service named 'x'", reason: 'unknown-service' });
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 404);
    assert.equal(e.reason, 'unknown-service');
    assert.equal(e.kind, 'not-found');
    assert.equal(e.message, "no service named 'x'");
  });

  test('falls back to the HTTP status for a body that is not the error JSON', () => {
    const e = errorFromResponse(404, undefined, 'Not Found');
    assert.equal(e.message, 'HTTP 404 Not Found');
    assert.equal(e.kind, 'no-extension');
    assert.equal(errorFromResponse(500, 'oops').message, 'HTTP 500');
    assert.equal(errorFromResponse(500, { message: 42 }).message, 'HTTP 500');
  });
});

describe('toApiError', () => {
  test('network failures of fetch become "unreachable" with status 0', () => {
    for (const err of [
      new TypeError('Failed to fetch'),
      new TypeError('NetworkError when attempting to fetch resource.'),
      Object.assign(new Error('x'), { name: 'NetworkError' })
    ]) {
      const e = toApiError(err);
      assert.equal(e.status, 0, String(err));
      assert.equal(e.kind, 'unreachable');
    }
  });

  test('a TypeError of a bug is not a network failure', () => {
    const e = toApiError(new TypeError("Cannot read properties of undefined (reading 'x')"));
    assert.notEqual(e.kind, 'unreachable');
    assert.match(e.message, /Cannot read properties/);
  });

  test('an ApiError passes through unchanged', () => {
    const original = new ApiError(403, 'forbidden', 'viewers cannot stop');
    assert.equal(toApiError(original), original);
  });
});

describe('describeError', () => {
  test('a network failure reads as "manager unreachable"', () => {
    const text = describeError(new TypeError('Failed to fetch'));
    assert.match(text, /^Manager unreachable/);
    assert.match(text, /Failed to fetch/);
  });

  test('an unreachable manager is named with the message', () => {
    const e = new ApiError(502, 'manager-unreachable', 'connection refused');
    assert.equal(
      describeError(e, 'http://127.0.0.1:8765'),
      'Manager unreachable at http://127.0.0.1:8765: connection refused.'
    );
  });

  test('each kind in plain words', () => {
    assert.equal(describeError(new ApiError(401, 'bad-credentials', '')), 'Login failed: wrong username or password.');
    assert.equal(
      describeError(new ApiError(401, 'bad-credentials', 'invalid username or password')),
      'Login failed: invalid username or password.'
    );
    assert.equal(describeError(new ApiError(403, 'forbidden', 'role viewer may not stop services')), 'Not allowed: role viewer may not stop services.');
    assert.equal(describeError(new ApiError(404, 'unknown-service', "no service named 'x'")), "Not found: no service named 'x'.");
    assert.equal(describeError(new ApiError(422, 'invalid-input', 'missing password')), 'Invalid input: missing password.');
    assert.equal(describeError(new ApiError(409, '', 'main cannot be deleted while others exist')), 'Refused: main cannot be deleted while others exist.');
    assert.equal(describeError(new ApiError(502, 'manager-error', 'the manager failed: boom')), 'The manager failed: boom.');
    assert.equal(describeError(new ApiError(500, '', 'HTTP 500')), 'Server error: HTTP 500.');
    assert.equal(describeError(new Error('something odd')), 'Something odd.');
  });

  test('a missing server extension says what to check', () => {
    const text = describeError(errorFromResponse(404, undefined, 'Not Found'));
    assert.match(text, /server extension/);
    assert.match(text, /jupyter server extension list/);
  });

  test('action errors name the action and the target', () => {
    assert.equal(
      describeActionError('stop', 'iris 0.1.2', new ApiError(403, 'forbidden', 'viewers cannot do that')),
      'Could not stop iris 0.1.2: Not allowed: viewers cannot do that.'
    );
  });
});

test('unreachableDetail: the server\'s words, or what no answer means', () => {
  assert.equal(
    unreachableDetail(new ApiError(502, 'manager-unreachable', 'cannot reach the manager at http://m: is it running?')),
    'Cannot reach the manager at http://m: is it running?'
  );
  assert.equal(unreachableDetail(new ApiError(502, 'manager-unreachable', 'connection refused')), 'Connection refused.');
  assert.match(unreachableDetail(new TypeError('Failed to fetch')), /^The request got no answer \(Failed to fetch\)\. Check that Jupyter/);
});

describe('the manager\'s own words (the dashboard)', () => {
  test('its message as a sentence start, without adding to it', () => {
    assert.equal(apiMessage(new ApiError(401, 'bad-credentials', 'wrong username or password')), 'Wrong username or password');
    assert.equal(apiMessage(errorFromResponse(409, { message: "user 'alice' exists already", reason: 'conflict' })), "User 'alice' exists already");
    assert.equal(apiMessage(errorFromResponse(502, undefined, 'Bad Gateway')), 'HTTP 502 Bad Gateway');
  });

  test('no answer at all says so', () => {
    assert.equal(apiMessage(new TypeError('Failed to fetch')), 'The manager did not answer. Is it running, and is the network up?');
  });

  test('capitalize leaves the rest as it is', () => {
    assert.equal(capitalize('wrong username'), 'Wrong username');
    assert.equal(capitalize(''), '');
  });

  test('an aborted request is recognised, anything else is not', () => {
    assert.ok(isAbort(Object.assign(new Error('The user aborted a request.'), { name: 'AbortError' })));
    assert.ok(!isAbort(new TypeError('Failed to fetch')));
    assert.ok(!isAbort(null));
  });
});
