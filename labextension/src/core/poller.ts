/**
 * Runs a task now and then again `interval` ms after each run ends, never two at once.
 */

export interface IScheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realScheduler: IScheduler = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: handle =>
    clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export interface IPollerOptions {
  /** The work of one tick; its failures are its own business (they are swallowed here). */
  task: () => Promise<void>;
  /** Milliseconds between the end of one run and the start of the next. */
  interval: number;
  scheduler?: IScheduler;
}

export class Poller {
  constructor(options: IPollerOptions) {
    this._task = options.task;
    this._interval = options.interval;
    this._scheduler = options.scheduler || realScheduler;
  }

  /** Polling (started and not stopped). */
  get active(): boolean {
    return this._active;
  }

  /** A run is in flight. */
  get running(): boolean {
    return this._current !== null;
  }

  /** Start polling: a run now (or as soon as the one in flight ends), then every interval. */
  start(): void {
    if (this._active) {
      return;
    }
    this._active = true;
    void this.refresh();
  }

  /** Stop scheduling runs; one in flight finishes, and nothing follows it. */
  stop(): void {
    this._active = false;
    this._again = false;
    this._cancelTimer();
  }

  /**
   * Run now. While a run is in flight, one more run follows it (however many
   * times this is called meanwhile); the promise resolves after that one.
   */
  refresh(): Promise<void> {
    if (this._disposed) {
      return Promise.resolve();
    }
    this._cancelTimer();
    if (this._current) {
      this._again = true;
      if (!this._next) {
        this._next = new Promise<void>(resolve => {
          this._resolveNext = resolve;
        });
      }
      return this._next;
    }
    return this._run();
  }

  dispose(): void {
    this._disposed = true;
    this.stop();
  }

  private _run(): Promise<void> {
    const run = (async () => {
      try {
        await this._task();
      } catch {
        // The task reports its own errors.
      }
    })();
    this._current = run.then(() => this._afterRun());
    return this._current;
  }

  private _afterRun(): void {
    this._current = null;
    if (this._again && !this._disposed) {
      this._again = false;
      const resolve = this._resolveNext;
      this._next = null;
      this._resolveNext = null;
      void this._run().then(() => resolve && resolve());
      return;
    }
    if (this._resolveNext) {
      // stop() dropped the follow-up run: let its waiters go.
      this._resolveNext();
      this._next = null;
      this._resolveNext = null;
    }
    if (this._active && !this._disposed) {
      this._timer = this._scheduler.setTimeout(() => {
        this._timer = null;
        void this.refresh();
      }, this._interval);
    }
  }

  private _cancelTimer(): void {
    if (this._timer !== null) {
      this._scheduler.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _task: () => Promise<void>;
  private _interval: number;
  private _scheduler: IScheduler;
  private _active = false;
  private _disposed = false;
  private _again = false;
  private _current: Promise<void> | null = null;
  private _next: Promise<void> | null = null;
  private _resolveNext: (() => void) | null = null;
  private _timer: unknown = null;
}
