import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  canStart,
  canStop,
  isTransient,
  normalizeStatus,
  statusDescription,
  statusTone
} from '../src/core/status';

test('tones of the known statuses', () => {
  assert.equal(statusTone('running'), 'ok');
  assert.equal(statusTone('building'), 'busy');
  assert.equal(statusTone('starting'), 'busy');
  assert.equal(statusTone('stopped'), 'idle');
  assert.equal(statusTone('failed'), 'bad');
  assert.equal(statusTone('crashed'), 'bad');
});

test('unknown statuses are shown generically', () => {
  assert.equal(statusTone('hibernating'), 'unknown');
  assert.equal(statusTone(''), 'unknown');
  assert.equal(statusTone(null), 'unknown');
  assert.equal(normalizeStatus(undefined), 'unknown');
  assert.equal(normalizeStatus(' Running '), 'running');
  assert.equal(statusTone('RUNNING'), 'ok');
  assert.equal(statusDescription('hibernating'), 'status: hibernating');
});

test('stop while running or on the way; start otherwise', () => {
  for (const s of ['running', 'starting', 'building']) {
    assert.ok(canStop(s), s);
    assert.ok(!canStart(s), s);
  }
  for (const s of ['stopped', 'failed', 'crashed', 'weird']) {
    assert.ok(canStart(s), s);
    assert.ok(!canStop(s), s);
  }
});

test('transient statuses', () => {
  assert.ok(isTransient('building'));
  assert.ok(isTransient('starting'));
  assert.ok(!isTransient('running'));
  assert.ok(!isTransient('failed'));
});
