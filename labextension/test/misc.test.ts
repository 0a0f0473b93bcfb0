import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import {
  confirmation,
  deleteUserConfirmation,
  revokeConfirmation,
  tokenSubject
} from '../src/core/confirm';
import { loginProblem, normalizeManagerUrl } from '../src/core/login';
import { emptyLogText, isAtBottom, trimLog, versionChoices } from '../src/core/logs';
import { canDeploy, canManageUsers } from '../src/core/roles';
import { service, version } from './fixtures';

describe('login form checks', () => {
  test('normalizeManagerUrl adds http:// and drops trailing slashes', () => {
    assert.equal(normalizeManagerUrl(' localhost:8765/ '), 'http://localhost:8765');
    assert.equal(normalizeManagerUrl('https://deploy.example/base/'), 'https://deploy.example/base');
    assert.equal(normalizeManagerUrl(''), '');
  });

  test('loginProblem names what is missing', () => {
    assert.equal(loginProblem({ url: '', username: '', password: '' }), 'Enter the manager URL, a username and the password.');
    assert.equal(loginProblem({ url: 'http://m', username: 'admin', password: '' }), 'Enter the password.');
    assert.equal(loginProblem({ url: 'ftp://m', username: 'a', password: 'b' }), 'The manager URL must start with http:// or https:// (got ftp://m).');
    assert.equal(loginProblem({ url: 'localhost:8765', username: 'a', password: 'b' }), '');
  });

  test('without a URL field only the name and password are checked', () => {
    assert.equal(loginProblem({ username: ' ', password: '' }), 'Enter a username and the password.');
    assert.equal(loginProblem({ username: 'a', password: '' }), 'Enter the password.');
    assert.equal(loginProblem({ username: 'a', password: 'b' }), '');
  });
});

describe('logs tab helpers', () => {
  test('isAtBottom with a little slack', () => {
    assert.ok(isAtBottom(900, 1000, 100));
    assert.ok(isAtBottom(895, 1000, 100));
    assert.ok(!isAtBottom(500, 1000, 100));
  });

  test('version choices: main first, then newest first', () => {
    const s = service('iris', {
      main_version: '0.1.0',
      versions: [version('0.1.0', { created: '2024-01-01T00:00:00Z' }), version('0.2.0', { created: '2024-02-01T00:00:00Z' })]
    });
    assert.deepEqual(versionChoices(s), [
      { value: '', label: 'main (0.1.0)' },
      { value: '0.2.0', label: '0.2.0' },
      { value: '0.1.0', label: '0.1.0 (main)' }
    ]);
    assert.deepEqual(versionChoices(null), [{ value: '', label: 'main' }]);
  });

  test('a long log keeps its newest half, from a whole line on', () => {
    assert.equal(trimLog('short', 100), 'short');
    const text = 'a'.repeat(30) + '\n' + 'b'.repeat(30) + '\n' + 'c'.repeat(39) + '\n';
    assert.equal(text.length, 102);
    assert.equal(trimLog(text, 100), 'c'.repeat(39) + '\n');
    // One endless line: cut it rather than keep it all.
    assert.equal(trimLog('x'.repeat(101), 100), 'x'.repeat(50));
  });

  test('empty log text', () => {
    assert.equal(emptyLogText('iris', null), 'No log lines yet for iris.');
    assert.equal(emptyLogText('iris', '0.1.0'), 'No log lines yet for iris 0.1.0.');
  });
});

describe('confirmations', () => {
  const iris = service('iris', {
    main_version: '0.1.0',
    versions: [version('0.1.0'), version('0.2.0')]
  });

  test('stop, restart and delete are destructive, promote and start are not', () => {
    assert.equal(confirmation('stop', iris, null).warn, true);
    assert.equal(confirmation('restart', iris, '0.1.0').warn, true);
    assert.equal(confirmation('delete', iris, '0.1.0').warn, true);
    assert.equal(confirmation('promote', iris, '0.2.0').warn, false);
    assert.equal(confirmation('start', iris, '0.2.0').warn, false);
  });

  test('they name what they act on', () => {
    const c = confirmation('promote', iris, '0.2.0');
    assert.equal(c.title, 'Promote iris 0.2.0?');
    assert.match(c.body, /instead of 0\.1\.0/);
    assert.equal(c.accept, 'Promote');
    assert.equal(confirmation('delete', iris, null).title, 'Delete iris?');
    assert.match(confirmation('delete', iris, null).body, /cannot be undone/);
    assert.match(confirmation('delete', iris, null).body, /invoke tokens are revoked/);
    assert.equal(confirmation('stop', iris, '0.1.0').title, 'Stop iris 0.1.0?');
    assert.match(confirmation('stop', iris, '0.1.0').body, /the service's/);
    assert.doesNotMatch(confirmation('stop', iris, '0.2.0').body, /the service's/);
    assert.match(confirmation('start', iris, '0.2.0').body, /\/services\/iris\/versions\/0\.2\.0\//);
  });

  test('deleting the only version says the service goes with it', () => {
    const alone = service('iris');
    assert.match(confirmation('delete', alone, '0.1.0').body, /only version, so the whole service iris is removed/);
    assert.doesNotMatch(confirmation('delete', iris, '0.2.0').body, /only version/);
  });

  test('revoking a token: another one, or the session\'s own', () => {
    const token = { id: 'abc', username: 'admin', scope: 'invoke', service: 'iris', note: null, created: null, expires_at: null, revoked: false, active: true };
    assert.equal(tokenSubject(token), 'the invoke token abc of iris');
    assert.equal(tokenSubject({ ...token, scope: 'deploy', service: null }), 'the deploy token abc');
    assert.equal(revokeConfirmation(token, false).title, 'Revoke abc?');
    assert.match(revokeConfirmation(token, false).body, /invoke token abc of iris are refused/);
    assert.match(revokeConfirmation(token, true).body, /logs you out/);
  });

  test('deleting a user', () => {
    const c = deleteUserConfirmation('alice');
    assert.equal(c.title, 'Delete user alice?');
    assert.equal(c.accept, 'Delete user');
    assert.equal(c.warn, true);
  });
});

describe('roles', () => {
  test('admins and deployers deploy; viewers do not', () => {
    assert.ok(canDeploy('admin'));
    assert.ok(canDeploy('deployer'));
    assert.ok(!canDeploy('viewer'));
    assert.ok(!canDeploy(null));
  });

  test('users are managed by an admin with an admin-scope token only', () => {
    assert.ok(canManageUsers('admin', 'admin'));
    assert.ok(!canManageUsers('admin', 'deploy'));
    assert.ok(!canManageUsers('deployer', 'admin'));
  });
});

test('src/core stays free of JupyterLab, Lumino, React and the DOM', () => {
  // lib-test/test/misc.test.js -> ../../src/core
  const dir = path.resolve(__dirname, '..', '..', 'src', 'core');
  const files = fs.readdirSync(dir).filter(f => f.endsWith('.ts'));
  assert.ok(files.length >= 8, `core modules found in ${dir}`);
  for (const file of files) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const imports = [...text.matchAll(/from\s+'([^']+)'/g)].map(m => m[1]);
    for (const spec of imports) {
      assert.ok(spec.startsWith('./'), `${file} imports ${spec}`);
    }
    assert.doesNotMatch(text, /\b(document|window)\./, `${file} touches the DOM`);
  }
});

test('src/dashboard stands alone: only its own modules and src/core, no JupyterLab', () => {
  const dir = path.resolve(__dirname, '..', '..', 'src', 'dashboard');
  const files = fs.readdirSync(dir).filter(f => f.endsWith('.ts'));
  assert.ok(files.includes('main.ts'), `dashboard modules found in ${dir}`);
  for (const file of files) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const [, spec] of text.matchAll(/from\s+'([^']+)'/g)) {
      assert.ok(/^\.\/[^/]+$|^\.\.\/core\/[^/]+$/.test(spec), `${file} imports ${spec}`);
    }
  }
});
