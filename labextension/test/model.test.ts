import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ApiError } from '../src/core/errors';
import { IDeployApi, SidebarModel } from '../src/core/model';
import { IScheduler } from '../src/core/poller';
import { ICredentials, IService, IStatus, LifecycleAction } from '../src/core/types';
import { deferred, flush, service, status, version } from './fixtures';

/** Timers that never fire by themselves. */
const idle: IScheduler = { setTimeout: () => 0, clearTimeout: () => undefined };

/** An API whose answers the test sets, recording every call. */
class FakeApi implements IDeployApi {
  calls: string[] = [];
  statusAnswer: IStatus | Error = status();
  servicesAnswer: IService[] | Error = [];
  actionError: Error | null = null;
  loginAnswer: IStatus | Error = status();
  /** When set, `services()` waits for it. */
  gate: Promise<void> | null = null;

  private answer<T>(value: T | Error): Promise<T> {
    return value instanceof Error ? Promise.reject(value) : Promise.resolve(value);
  }

  status(): Promise<IStatus> {
    this.calls.push('status');
    return this.answer(this.statusAnswer);
  }

  login(c: ICredentials): Promise<IStatus> {
    this.calls.push(`login ${c.url} ${c.username}`);
    return this.answer(this.loginAnswer);
  }

  logout(): Promise<IStatus> {
    this.calls.push('logout');
    this.statusAnswer = status({ logged_in: false, username: null, role: null, message: 'not logged in to http://127.0.0.1:8765', reason: 'not-logged-in' });
    return this.answer(this.statusAnswer);
  }

  async services(): Promise<IService[]> {
    this.calls.push('services');
    if (this.gate) {
      await this.gate;
    }
    return this.answer(this.servicesAnswer);
  }

  private action(call: string): Promise<unknown> {
    this.calls.push(call);
    return this.actionError ? Promise.reject(this.actionError) : Promise.resolve({});
  }

  promote(name: string, v: string): Promise<unknown> {
    return this.action(`promote ${name} ${v}`);
  }

  act(name: string, action: LifecycleAction, v?: string | null): Promise<unknown> {
    return this.action(`${action} ${name}${v ? ' ' + v : ''}`);
  }

  deleteService(name: string): Promise<unknown> {
    return this.action(`delete ${name}`);
  }

  deleteVersion(name: string, v: string): Promise<unknown> {
    return this.action(`delete ${name} ${v}`);
  }
}

function setup() {
  const api = new FakeApi();
  const model = new SidebarModel(api, { scheduler: idle });
  return { api, model };
}

describe('SidebarModel', () => {
  test('starts loading, then lists the services sorted by name', async () => {
    const { api, model } = setup();
    api.servicesAnswer = [service('wine'), service('iris')];
    assert.equal(model.snapshot.view.state, 'loading');
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'list');
    assert.deepEqual(model.snapshot.services.map(s => s.name), ['iris', 'wine']);
    assert.deepEqual(api.calls, ['status', 'services']);
  });

  test('does not ask for services when not logged in; shows the login form', async () => {
    const { api, model } = setup();
    api.statusAnswer = status({ logged_in: false, reason: 'not-logged-in', message: 'not logged in to x' });
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'login');
    assert.deepEqual(api.calls, ['status']);
  });

  test('no deployments: the empty state', async () => {
    const { model } = setup();
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'empty');
  });

  test('a network failure is "unreachable", and Retry recovers', async () => {
    const { api, model } = setup();
    api.statusAnswer = new TypeError('Failed to fetch');
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'unreachable');
    assert.equal(
      model.snapshot.view.message,
      'The request got no answer (Failed to fetch). Check that Jupyter and the manager are running.'
    );
    api.statusAnswer = status();
    api.servicesAnswer = [service('iris')];
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'list');
  });

  test('the manager going down while listed shows unreachable with its URL', async () => {
    const { api, model } = setup();
    api.servicesAnswer = [service('iris')];
    await model.refresh();
    api.servicesAnswer = new ApiError(502, 'manager-unreachable', 'connection refused');
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'unreachable');
    assert.equal(model.snapshot.view.managerUrl, 'http://127.0.0.1:8765');
    assert.match(model.snapshot.view.message, /connection refused/i);
  });

  test('refreshes while one is in flight never overlap', async () => {
    const { api, model } = setup();
    const gate = deferred<void>();
    api.gate = gate.promise;
    const first = model.refresh();
    await flush();
    const second = model.refresh();
    const third = model.refresh();
    await flush();
    assert.deepEqual(api.calls, ['status', 'services']);
    api.gate = null;
    gate.resolve();
    await Promise.all([first, second, third]);
    assert.deepEqual(api.calls, ['status', 'services', 'status', 'services']);
  });

  test('listeners hear about changes, and nothing when nothing changed', async () => {
    const { api, model } = setup();
    api.servicesAnswer = [service('iris')];
    let calls = 0;
    model.subscribe(() => calls++);
    await model.refresh();
    const afterFirst = calls;
    const services = model.snapshot.services;
    assert.ok(afterFirst >= 1);
    api.servicesAnswer = [service('iris')]; // equal data, new objects
    await model.refresh();
    assert.equal(calls, afterFirst, 'an identical answer does not re-render');
    assert.equal(model.snapshot.services, services, 'the same array is kept');
    api.servicesAnswer = [service('iris', { status: 'stopped', versions: [version('0.1.0', { status: 'stopped' })] })];
    await model.refresh();
    assert.equal(calls, afterFirst + 1);
    assert.equal(model.snapshot.announcement, 'iris 0.1.0 is now stopped.');
  });

  test('an action calls the API, then refreshes', async () => {
    const { api, model } = setup();
    api.servicesAnswer = [service('iris')];
    await model.refresh();
    api.calls = [];
    assert.equal(await model.run('stop', 'iris', '0.1.0'), true);
    assert.deepEqual(api.calls, ['stop iris 0.1.0', 'status', 'services']);
    assert.equal(model.snapshot.actionError, '');
    api.calls = [];
    await model.run('promote', 'iris', '0.2.0');
    await model.run('delete', 'iris', '0.0.1');
    await model.run('delete', 'iris');
    await model.run('start', 'iris');
    assert.deepEqual(
      api.calls.filter(c => c !== 'status' && c !== 'services'),
      ['promote iris 0.2.0', 'delete iris 0.0.1', 'delete iris', 'start iris']
    );
  });

  test('a failed action is shown in plain words, and the target is busy only meanwhile', async () => {
    const { api, model } = setup();
    api.servicesAnswer = [service('iris')];
    await model.refresh();
    api.actionError = new ApiError(403, 'forbidden', 'role viewer may not stop services');
    const running = model.run('stop', 'iris');
    assert.ok(model.snapshot.busy.has('iris'));
    assert.equal(await running, false);
    assert.ok(!model.snapshot.busy.has('iris'));
    assert.equal(model.snapshot.actionError, 'Could not stop iris: Not allowed: role viewer may not stop services.');
    model.dismissError();
    assert.equal(model.snapshot.actionError, '');
  });

  test('the same target cannot run two actions at once', async () => {
    const { api, model } = setup();
    const slow = deferred<unknown>();
    api.deleteService = () => {
      api.calls.push('delete');
      return slow.promise;
    };
    const first = model.run('delete', 'iris');
    assert.equal(await model.run('stop', 'iris'), false);
    slow.resolve({});
    await first;
    assert.equal(api.calls.filter(c => c === 'delete').length, 1);
    assert.ok(!api.calls.includes('stop iris'));
  });

  test('login: bad credentials stay in the form with a message', async () => {
    const { api, model } = setup();
    api.statusAnswer = status({ logged_in: false, reason: 'not-logged-in' });
    await model.refresh();
    api.loginAnswer = new ApiError(401, 'bad-credentials', 'invalid username or password');
    const ok = await model.login({ url: 'http://127.0.0.1:8765', username: 'admin', password: 'nope' });
    assert.equal(ok, false);
    assert.equal(model.snapshot.view.state, 'login');
    assert.equal(model.snapshot.loginError, 'Login failed: invalid username or password.');
    assert.equal(model.snapshot.loggingIn, false);
  });

  test('login: an unreachable manager is named in the form', async () => {
    const { api, model } = setup();
    api.statusAnswer = status({ logged_in: false, reason: 'not-logged-in' });
    await model.refresh();
    api.loginAnswer = new ApiError(502, 'manager-unreachable', 'connection refused');
    await model.login({ url: 'http://10.9.9.9:1', username: 'admin', password: 'pw' });
    assert.equal(model.snapshot.view.state, 'login');
    assert.equal(model.snapshot.loginError, 'Manager unreachable at http://10.9.9.9:1: connection refused.');
  });

  test('login succeeds: the list follows; logout returns to the form', async () => {
    const { api, model } = setup();
    api.statusAnswer = status({ logged_in: false, reason: 'not-logged-in' });
    await model.refresh();
    api.statusAnswer = status();
    api.loginAnswer = status();
    api.servicesAnswer = [service('iris')];
    assert.equal(await model.login({ url: 'http://127.0.0.1:8765', username: 'admin', password: 'pw' }), true);
    assert.equal(model.snapshot.view.state, 'list');
    assert.equal(model.snapshot.loginError, '');
    await model.logout();
    assert.equal(model.snapshot.view.state, 'login');
    assert.ok(api.calls.includes('logout'));
  });

  test('a session refused by the manager goes back to the login form', async () => {
    const { api, model } = setup();
    api.servicesAnswer = [service('iris')];
    await model.refresh();
    api.servicesAnswer = new ApiError(401, 'not-logged-in', 'the manager refused the stored login');
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'login');
  });

  test('showLogin switches to the form and back', async () => {
    const { api, model } = setup();
    api.statusAnswer = status({ reachable: false, reason: 'manager-unreachable', message: 'down' });
    await model.refresh();
    assert.equal(model.snapshot.view.state, 'unreachable');
    model.showLogin(true);
    assert.equal(model.snapshot.view.state, 'login');
    model.showLogin(false);
    assert.equal(model.snapshot.view.state, 'unreachable');
  });

  test('polls only while visible', async () => {
    const timers: Array<() => void> = [];
    const scheduler: IScheduler = {
      setTimeout: fn => timers.push(fn),
      clearTimeout: () => {
        timers.length = 0;
      }
    };
    const api = new FakeApi();
    const model = new SidebarModel(api, { scheduler, interval: 5000 });
    await flush();
    assert.equal(api.calls.length, 0, 'nothing before it is shown');
    model.setVisible(true);
    await flush();
    assert.deepEqual(api.calls, ['status', 'services']);
    assert.equal(timers.length, 1);
    model.setVisible(false);
    assert.equal(timers.length, 0, 'hidden: the next poll is cancelled');
    model.dispose();
  });
});
