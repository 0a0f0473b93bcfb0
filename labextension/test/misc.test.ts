import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { confirmation } from '../src/core/confirm';
import { loginProblem, normalizeManagerUrl } from '../src/core/login';
import { emptyLogText, isAtBottom, versionChoices } from '../src/core/logs';
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

  test('empty log text', () => {
    assert.equal(emptyLogText('iris', null), 'No log lines yet for iris.');
    assert.equal(emptyLogText('iris', '0.1.0'), 'No log lines yet for iris 0.1.0.');
  });
});

describe('confirmations', () => {
  test('stop and delete are destructive, promote is not', () => {
    assert.equal(confirmation('stop', 'iris', null).warn, true);
    assert.equal(confirmation('delete', 'iris', '0.1.0').warn, true);
    assert.equal(confirmation('promote', 'iris', '0.2.0').warn, false);
  });

  test('they name what they act on', () => {
    const c = confirmation('promote', 'iris', '0.2.0', '0.1.0');
    assert.equal(c.title, 'Promote iris 0.2.0?');
    assert.match(c.body, /instead of 0\.1\.0/);
    assert.equal(c.accept, 'Promote');
    assert.equal(confirmation('delete', 'iris', null).title, 'Delete iris?');
    assert.match(confirmation('delete', 'iris', null).body, /cannot be undone/);
    assert.equal(confirmation('stop', 'iris', '0.1.0').title, 'Stop iris 0.1.0?');
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
