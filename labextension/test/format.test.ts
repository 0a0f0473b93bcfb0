import assert from 'node:assert/strict';
import { test } from 'node:test';

import { exactTime, localTime, timeAgo } from '../src/core/format';

const now = Date.UTC(2024, 4, 10, 12, 0, 0);
const ago = (ms: number): string => new Date(now - ms).toISOString();

test('timeAgo in words', () => {
  assert.equal(timeAgo(ago(5 * 1000), now), 'just now');
  assert.equal(timeAgo(ago(-20 * 1000), now), 'just now'); // a clock a little ahead
  assert.equal(timeAgo(ago(60 * 1000), now), '1 min ago');
  assert.equal(timeAgo(ago(3 * 60 * 1000), now), '3 min ago');
  assert.equal(timeAgo(ago(59 * 60 * 1000), now), '59 min ago');
  assert.equal(timeAgo(ago(2 * 3600 * 1000 + 5000), now), '2 h ago');
  assert.equal(timeAgo(ago(25 * 3600 * 1000), now), '1 day ago');
  assert.equal(timeAgo(ago(5 * 86400 * 1000), now), '5 days ago');
  assert.equal(timeAgo(ago(60 * 86400 * 1000), now), '2024-03-11');
});

test('timeAgo of nothing is nothing', () => {
  assert.equal(timeAgo(null, now), '');
  assert.equal(timeAgo('not a time', now), '');
});

test('exactTime for tooltips', () => {
  assert.equal(exactTime('2024-05-01T10:03:59Z'), '2024-05-01 10:03 UTC');
  assert.equal(exactTime(undefined), '');
});

test('localTime in the reader\'s zone; a time without a zone is UTC', () => {
  assert.equal(localTime('2024-05-01T10:03:59Z', 'en-US', 'UTC'), '5/1/2024, 10:03:59 AM');
  assert.equal(localTime('2024-05-01T10:03:59', 'en-US', 'Europe/Stockholm'), '5/1/2024, 12:03:59 PM');
  assert.equal(localTime(null), '');
});
