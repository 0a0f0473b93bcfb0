import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { describeDiff, diffServices, sameData, stableStringify } from '../src/core/diff';
import { service, version } from './fixtures';

test('stableStringify ignores key order', () => {
  assert.equal(stableStringify({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } }), '{"a":{"c":[3,{"e":0,"f":1}],"d":2},"b":1}');
  assert.ok(sameData({ a: 1, b: 2 }, { b: 2, a: 1 }));
  assert.ok(!sameData({ a: 1 }, { a: 2 }));
});

describe('diffServices', () => {
  test('nothing known before: changed, nothing to announce', () => {
    const d = diffServices(null, [service('iris')]);
    assert.ok(d.changed);
    assert.deepEqual(describeDiff(d), []);
  });

  test('the same data (in another key order) is no change', () => {
    const before = [service('iris')];
    const reordered: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(service('iris')).reverse()) {
      reordered[key] = value;
    }
    const after = [reordered as unknown as ReturnType<typeof service>];
    assert.notEqual(JSON.stringify(before), JSON.stringify(after));
    const d = diffServices(before, after);
    assert.equal(d.changed, false);
    assert.deepEqual(describeDiff(d), []);
  });

  test('added and removed services', () => {
    const d = diffServices([service('a'), service('b')], [service('b'), service('c')]);
    assert.ok(d.changed);
    assert.deepEqual(d.added, ['c']);
    assert.deepEqual(d.removed, ['a']);
    assert.deepEqual(describeDiff(d), ['New service c.', 'Service a was deleted.']);
  });

  test('status changes of versions, new versions and a new main', () => {
    const before = [
      service('iris', {
        main_version: '0.1.0',
        status: 'running',
        versions: [version('0.1.0'), version('0.0.9', { status: 'running' })]
      })
    ];
    const after = [
      service('iris', {
        main_version: '0.1.1',
        status: 'starting',
        versions: [version('0.1.1', { status: 'starting' }), version('0.1.0', { status: 'stopped' })]
      })
    ];
    const d = diffServices(before, after);
    assert.deepEqual(d.addedVersions, [{ service: 'iris', version: '0.1.1' }]);
    assert.deepEqual(d.removedVersions, [{ service: 'iris', version: '0.0.9' }]);
    assert.deepEqual(d.mainChanges, [{ service: 'iris', from: '0.1.0', to: '0.1.1' }]);
    assert.deepEqual(d.statusChanges, [
      { service: 'iris', version: null, from: 'running', to: 'starting' },
      { service: 'iris', version: '0.1.0', from: 'running', to: 'stopped' }
    ]);
    assert.deepEqual(describeDiff(d), [
      'New version 0.1.1 of iris.',
      'Version 0.0.9 of iris was deleted.',
      'iris: version 0.1.1 is now main.',
      'iris 0.1.0 is now stopped.'
    ]);
  });

  test('a change in any other field still counts as changed', () => {
    const d = diffServices([service('iris')], [service('iris', { versions: [version('0.1.0', { updated: '2024-06-01T00:00:00Z' })] })]);
    assert.ok(d.changed);
    assert.deepEqual(describeDiff(d), []);
  });
});
