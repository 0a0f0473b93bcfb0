import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { IScheduler, Poller } from '../src/core/poller';
import { deferred, flush } from './fixtures';

/** A scheduler whose timers fire only when the test says so. */
class ManualScheduler implements IScheduler {
  timers = new Map<number, { fn: () => void; ms: number }>();
  private next = 1;

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { fn, ms });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Fire every pending timer once. */
  fire(): void {
    const pending = [...this.timers.entries()];
    this.timers.clear();
    for (const [, t] of pending) {
      t.fn();
    }
  }
}

/** A task that counts runs and concurrent runs, and finishes when the test releases it. */
function gatedTask() {
  const state = { runs: 0, inFlight: 0, maxInFlight: 0, gates: [] as Array<() => void> };
  const task = async (): Promise<void> => {
    state.runs++;
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    const gate = deferred<void>();
    state.gates.push(() => gate.resolve());
    await gate.promise;
    state.inFlight--;
  };
  const release = async (): Promise<void> => {
    const open = state.gates.splice(0);
    open.forEach(g => g());
    await flush();
  };
  return { state, task, release };
}

describe('Poller', () => {
  test('runs at once on start, then again one interval after each run ends', async () => {
    const scheduler = new ManualScheduler();
    const { state, task, release } = gatedTask();
    const poller = new Poller({ task, interval: 5000, scheduler });
    poller.start();
    await flush();
    assert.equal(state.runs, 1);
    assert.equal(scheduler.timers.size, 0, 'no timer while the run is in flight');
    await release();
    assert.equal(scheduler.timers.size, 1);
    assert.equal([...scheduler.timers.values()][0].ms, 5000);
    scheduler.fire();
    await flush();
    assert.equal(state.runs, 2);
    poller.dispose();
  });

  test('never overlaps: refreshes during a run become one follow-up run', async () => {
    const scheduler = new ManualScheduler();
    const { state, task, release } = gatedTask();
    const poller = new Poller({ task, interval: 5000, scheduler });
    poller.start();
    await flush();
    const waits = [poller.refresh(), poller.refresh(), poller.refresh()];
    await flush();
    assert.equal(state.runs, 1);
    await release(); // the first run ends, the follow-up starts
    assert.equal(state.runs, 2);
    assert.equal(state.maxInFlight, 1);
    let done = false;
    void Promise.all(waits).then(() => {
      done = true;
    });
    await flush();
    assert.equal(done, false, 'refresh() resolves after the follow-up run, not before');
    await release();
    assert.equal(done, true);
    assert.equal(state.runs, 2);
    assert.equal(state.maxInFlight, 1);
    poller.dispose();
  });

  test('stop: no more runs, the run in flight ends normally', async () => {
    const scheduler = new ManualScheduler();
    const { state, task, release } = gatedTask();
    const poller = new Poller({ task, interval: 5000, scheduler });
    poller.start();
    await flush();
    poller.stop();
    await release();
    assert.equal(scheduler.timers.size, 0);
    assert.equal(poller.active, false);
    assert.equal(state.runs, 1);
    poller.start();
    await flush();
    assert.equal(state.runs, 2);
    poller.dispose();
  });

  test('a refresh cancels the pending timer instead of adding a run', async () => {
    const scheduler = new ManualScheduler();
    let runs = 0;
    const poller = new Poller({
      task: async () => {
        runs++;
      },
      interval: 5000,
      scheduler
    });
    poller.start();
    await flush();
    assert.equal(runs, 1);
    assert.equal(scheduler.timers.size, 1);
    await poller.refresh();
    await flush();
    assert.equal(runs, 2);
    assert.equal(scheduler.timers.size, 1, 'exactly one timer pending');
    poller.dispose();
    assert.equal(scheduler.timers.size, 0);
  });

  test('a failing task does not stop polling', async () => {
    const scheduler = new ManualScheduler();
    let runs = 0;
    const poller = new Poller({
      task: async () => {
        runs++;
        throw new Error('boom');
      },
      interval: 10,
      scheduler
    });
    poller.start();
    await flush();
    scheduler.fire();
    await flush();
    assert.equal(runs, 2);
    assert.equal(scheduler.timers.size, 1);
    poller.dispose();
  });
});
