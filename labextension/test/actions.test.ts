import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  actionLabel,
  busyLabel,
  doneMessage,
  IActionApi,
  performAction,
  targetKey,
  targetLabel,
  versionActions
} from '../src/core/actions';
import { ApiError } from '../src/core/errors';
import { LifecycleAction } from '../src/core/types';
import { service, version } from './fixtures';

describe('versionActions', () => {
  const iris = service('iris', {
    main_version: '0.1.1',
    versions: [
      version('0.1.0', { status: 'stopped' }),
      version('0.1.1'),
      version('0.1.2', { status: 'building' }),
      version('0.1.3', { status: 'crashed' })
    ]
  });
  const of = (v: string) => versionActions(iris, iris.versions.find(x => x.version === v)!);

  test('main: stop, and no promote nor delete (the manager refuses to delete it)', () => {
    assert.deepEqual(of('0.1.1'), ['stop']);
  });

  test('a stopped or crashed version can be promoted, started and deleted', () => {
    assert.deepEqual(of('0.1.0'), ['promote', 'start', 'delete']);
    assert.deepEqual(of('0.1.3'), ['promote', 'start', 'delete']);
  });

  test('a version still building is not promoted, but may be stopped', () => {
    assert.deepEqual(of('0.1.2'), ['stop', 'delete']);
  });

  test('the only version may be deleted, main or not', () => {
    const alone = service('wine');
    assert.deepEqual(versionActions(alone, alone.versions[0]), ['stop', 'delete']);
  });
});

describe('performAction', () => {
  class Recorder implements IActionApi {
    calls: string[] = [];
    promote(name: string, v: string): Promise<unknown> {
      this.calls.push(`promote ${name} ${v}`);
      return Promise.resolve({});
    }
    act(name: string, action: LifecycleAction, v?: string | null): Promise<unknown> {
      this.calls.push(`${action} ${name}${v ? ' ' + v : ''}`);
      return Promise.resolve({});
    }
    deleteService(name: string): Promise<unknown> {
      this.calls.push(`delete ${name}`);
      return Promise.resolve({});
    }
    deleteVersion(name: string, v: string): Promise<unknown> {
      this.calls.push(`delete ${name} ${v}`);
      return Promise.resolve({});
    }
  }

  test('each action reaches its call', async () => {
    const api = new Recorder();
    await performAction(api, 'promote', 'iris', '0.2.0');
    await performAction(api, 'stop', 'iris', '0.2.0');
    await performAction(api, 'start', 'iris');
    await performAction(api, 'restart', 'iris', null);
    await performAction(api, 'delete', 'iris', '0.1.0');
    await performAction(api, 'delete', 'iris');
    assert.deepEqual(api.calls, [
      'promote iris 0.2.0',
      'stop iris 0.2.0',
      'start iris',
      'restart iris',
      'delete iris 0.1.0',
      'delete iris'
    ]);
  });

  test('promote needs a version', async () => {
    const api = new Recorder();
    await assert.rejects(performAction(api, 'promote', 'iris'), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.kind, 'invalid-input');
      return true;
    });
    assert.deepEqual(api.calls, []);
  });
});

describe('what actions say', () => {
  test('targets', () => {
    assert.equal(targetKey('iris'), 'iris');
    assert.equal(targetKey('iris', '0.1.0'), 'iris/0.1.0');
    assert.equal(targetLabel('iris', '0.1.0'), 'iris 0.1.0');
    assert.equal(targetLabel('iris', null), 'iris');
  });

  test('labels, while busy, and once done', () => {
    assert.equal(actionLabel('promote'), 'Promote');
    assert.equal(busyLabel('delete'), 'Deleting…');
    assert.equal(doneMessage('promote', 'flip', '0.1.0'), 'flip 0.1.0 is now the main version.');
    assert.equal(doneMessage('stop', 'flip', '0.1.0'), 'flip 0.1.0 is stopped.');
    assert.equal(doneMessage('delete', 'flip'), 'Service flip is deleted.');
  });
});
