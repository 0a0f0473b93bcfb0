import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { apiUrl, joinUrl, ManagerUrls, pathUrl, queryString, Urls, WidgetIds } from '../src/core/urls';

describe('joinUrl', () => {
  test('joins with single slashes and keeps the scheme', () => {
    assert.equal(joinUrl('http://h:8888/', '/a/', 'b'), 'http://h:8888/a/b');
    assert.equal(joinUrl('http://h//base//', 'x'), 'http://h/base/x');
  });

  test('keeps a leading slash of a relative base', () => {
    assert.equal(joinUrl('/lab/base/', 'jupyter-deploy/api'), '/lab/base/jupyter-deploy/api');
  });

  test('skips empty parts', () => {
    assert.equal(joinUrl('', 'a', '', 'b'), 'a/b');
    assert.equal(joinUrl(), '');
  });
});

describe('apiUrl', () => {
  const base = 'http://localhost:8888/user/me/';

  test('puts routes under jupyter-deploy/api of the base URL', () => {
    assert.equal(Urls.status(base), 'http://localhost:8888/user/me/jupyter-deploy/api/status');
    assert.equal(Urls.services(base), 'http://localhost:8888/user/me/jupyter-deploy/api/services');
    assert.equal(Urls.login(base), 'http://localhost:8888/user/me/jupyter-deploy/api/login');
    assert.equal(Urls.logout(base), 'http://localhost:8888/user/me/jupyter-deploy/api/logout');
  });

  test('builds service, version, action and promote routes', () => {
    const root = 'http://localhost:8888/user/me/jupyter-deploy/api/services';
    assert.equal(Urls.service(base, 'iris'), `${root}/iris`);
    assert.equal(Urls.version(base, 'iris', '0.1.2'), `${root}/iris/versions/0.1.2`);
    assert.equal(Urls.action(base, 'iris', 'stop'), `${root}/iris/stop`);
    assert.equal(Urls.action(base, 'iris', 'restart', '0.1.2'), `${root}/iris/versions/0.1.2/restart`);
    assert.equal(Urls.action(base, 'iris', 'start', null), `${root}/iris/start`);
    assert.equal(Urls.promote(base, 'iris'), `${root}/iris/promote`);
    assert.equal(Urls.docsLink(base, 'iris'), `${root}/iris/docs-link`);
  });

  test('logs carry tail and, when given, the version', () => {
    const root = 'http://localhost:8888/user/me/jupyter-deploy/api/services/iris/logs';
    assert.equal(Urls.logs(base, 'iris', { tail: 500 }), `${root}?tail=500`);
    assert.equal(Urls.logs(base, 'iris', { tail: 500, version: '1.0.0' }), `${root}?tail=500&version=1.0.0`);
    assert.equal(Urls.logs(base, 'iris', { tail: 10, version: null }), `${root}?tail=10`);
    assert.equal(Urls.logs(base, 'iris'), root);
  });

  test('encodes each name as one segment; refuses empty and dot segments', () => {
    assert.equal(apiUrl('/', 'services', 'a/b?c'), '/jupyter-deploy/api/services/a%2Fb%3Fc');
    assert.throws(() => Urls.service(base, '..'), /not a valid name/);
    assert.throws(() => Urls.service(base, ''), /not a valid name/);
  });

  test('queryString encodes and drops missing values', () => {
    assert.equal(queryString({ a: 1, b: undefined, c: 'x y&z', d: null }), '?a=1&c=x%20y%26z');
    assert.equal(queryString({}), '');
  });
});

describe('ManagerUrls', () => {
  test('relative to the page with an empty base, so a proxy prefix is kept', () => {
    assert.equal(ManagerUrls.health(''), 'api/health');
    assert.equal(ManagerUrls.login(''), 'api/login');
    assert.equal(ManagerUrls.whoami(''), 'api/whoami');
    assert.equal(ManagerUrls.events(''), 'api/events');
    assert.equal(ManagerUrls.services(''), 'api/services');
    assert.equal(ManagerUrls.tokens(''), 'api/tokens');
    assert.equal(ManagerUrls.users(''), 'api/users');
  });

  test('absolute under a manager URL', () => {
    assert.equal(ManagerUrls.service('http://m:8765/', 'iris'), 'http://m:8765/api/services/iris');
  });

  test('services, versions and their actions', () => {
    assert.equal(ManagerUrls.version('', 'iris', '0.1.2'), 'api/services/iris/versions/0.1.2');
    assert.equal(ManagerUrls.action('', 'iris', 'stop', '0.1.2'), 'api/services/iris/versions/0.1.2/stop');
    assert.equal(ManagerUrls.action('', 'iris', 'start'), 'api/services/iris/start');
    assert.equal(ManagerUrls.promote('', 'iris'), 'api/services/iris/promote');
    assert.equal(ManagerUrls.usage('', 'iris'), 'api/services/iris/usage');
  });

  test('a followed log asks for its tail and, when given, the version', () => {
    assert.equal(ManagerUrls.logs('', 'iris', { follow: true, tail: 200 }), 'api/services/iris/logs?follow=1&tail=200');
    assert.equal(ManagerUrls.logs('', 'iris', { follow: true, tail: 200, version: '0.1.0' }), 'api/services/iris/logs?follow=1&tail=200&version=0.1.0');
    assert.equal(ManagerUrls.logs('', 'iris', { tail: 5, version: '' }), 'api/services/iris/logs?tail=5');
  });

  test('tokens and users by id and name, each one segment', () => {
    assert.equal(ManagerUrls.token('', 'a/b'), 'api/tokens/a%2Fb');
    assert.equal(ManagerUrls.user('', 'alice'), 'api/users/alice');
    assert.throws(() => ManagerUrls.user('', '..'), /not a valid name/);
  });

  test('the docs page carries a token only in its fragment', () => {
    assert.equal(ManagerUrls.docs('', 'iris'), 'services/iris/docs');
    assert.equal(ManagerUrls.docs('', 'iris', 'jdt_a+b'), 'services/iris/docs#token=jdt_a%2Bb');
  });

  test('pathUrl encodes each segment', () => {
    assert.equal(pathUrl('', 'a b', 'c'), 'a%20b/c');
  });
});

test('widget ids are the stable hooks', () => {
  assert.equal(WidgetIds.sidebar, 'jupyter-deploy-sidebar');
  assert.equal(WidgetIds.logs('iris'), 'jupyter-deploy-logs-iris');
  assert.equal(WidgetIds.docs('iris'), 'jupyter-deploy-docs-iris');
});
