import assert from 'node:assert/strict';
import { test } from 'node:test';

import { versionRole } from '../src/core/traffic';
import { service, version } from './fixtures';

test('main, previous main, canary and shadow', () => {
  const iris = service('iris', {
    main_version: '0.1.2',
    previous_main: '0.1.1',
    traffic: {
      canary: { version: '0.1.3', weight: 10 },
      shadows: ['0.1.4'],
      shadow_stats: { '0.1.4': { compared: 7, differ: 1 } }
    },
    versions: ['0.1.1', '0.1.2', '0.1.3', '0.1.4'].map(v => version(v))
  });
  const none = { main: false, previous: false, canaryWeight: null, shadow: false, shadowStats: null };
  assert.deepEqual(versionRole(iris, '0.1.2'), { ...none, main: true });
  assert.deepEqual(versionRole(iris, '0.1.1'), { ...none, previous: true });
  assert.deepEqual(versionRole(iris, '0.1.3'), { ...none, canaryWeight: 10 });
  assert.deepEqual(versionRole(iris, '0.1.4'), { ...none, shadow: true, shadowStats: { compared: 7, differ: 1 } });
});

test('no traffic settings at all', () => {
  const iris = service('iris', { traffic: null });
  assert.deepEqual(versionRole(iris, '0.1.0'), { main: true, previous: false, canaryWeight: null, shadow: false, shadowStats: null });
});
