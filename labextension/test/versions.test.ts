import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  compareVersionStrings,
  mainVersion,
  parseTime,
  sortServices,
  sortVersionsNewestFirst
} from '../src/core/versions';
import { service, version } from './fixtures';

describe('compareVersionStrings', () => {
  test('numbers compare as numbers', () => {
    assert.ok(compareVersionStrings('0.1.10', '0.1.9') > 0);
    assert.ok(compareVersionStrings('0.2.0', '0.10.0') < 0);
    assert.equal(compareVersionStrings('1.0.0', '1.0.0'), 0);
  });

  test('longer is newer; a release is newer than its pre-release', () => {
    assert.ok(compareVersionStrings('1.0.1', '1.0') > 0);
    assert.ok(compareVersionStrings('1.0.0', '1.0.0-rc1') > 0);
    assert.ok(compareVersionStrings('1.0.0rc2', '1.0.0rc1') > 0);
  });
});

describe('sortVersionsNewestFirst', () => {
  test('by creation time, newest first', () => {
    const sorted = sortVersionsNewestFirst([
      version('0.1.0', { created: '2024-05-01T10:00:00Z' }),
      version('0.1.2', { created: '2024-05-03T10:00:00Z' }),
      version('0.1.1', { created: '2024-05-02T10:00:00Z' })
    ]);
    assert.deepEqual(sorted.map(v => v.version), ['0.1.2', '0.1.1', '0.1.0']);
  });

  test('same or missing times fall back to the version number', () => {
    const sorted = sortVersionsNewestFirst([
      version('0.1.9', { created: '2024-05-01T10:00:00Z' }),
      version('0.1.10', { created: '2024-05-01T10:00:00Z' }),
      version('2.0.0', { created: null }),
      version('0.2.0', { created: '2024-05-02T10:00:00Z' })
    ]);
    assert.deepEqual(sorted.map(v => v.version), ['0.2.0', '0.1.10', '0.1.9', '2.0.0']);
  });

  test('does not change its argument', () => {
    const input = [version('1'), version('2', { created: '2030-01-01T00:00:00Z' })];
    sortVersionsNewestFirst(input);
    assert.deepEqual(input.map(v => v.version), ['1', '2']);
  });
});

test('parseTime reads zone-less times as UTC and rejects junk', () => {
  assert.equal(parseTime('2024-05-01T10:00:00'), Date.UTC(2024, 4, 1, 10));
  assert.equal(parseTime('2024-05-01T10:00:00+02:00'), Date.UTC(2024, 4, 1, 8));
  assert.ok(Number.isNaN(parseTime('yesterday-ish')));
  assert.ok(Number.isNaN(parseTime(null)));
});

test('services by name; the main version is found', () => {
  assert.deepEqual(sortServices([service('b'), service('a')]).map(s => s.name), ['a', 'b']);
  const s = service('iris', { main_version: '0.1.1', versions: [version('0.1.0'), version('0.1.1')] });
  assert.equal(mainVersion(s)?.version, '0.1.1');
  assert.equal(mainVersion(service('x', { main_version: null })), undefined);
});
