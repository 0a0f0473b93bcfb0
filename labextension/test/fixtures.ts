import { IService, IStatus, IVersion } from '../src/core/types';

export function status(patch: Partial<IStatus> = {}): IStatus {
  return {
    manager_url: 'http://127.0.0.1:8765',
    public_url: 'http://127.0.0.1:8765',
    logged_in: true,
    username: 'admin',
    role: 'admin',
    reachable: true,
    message: null,
    reason: null,
    ...patch
  };
}

export function version(v: string, patch: Partial<IVersion> = {}): IVersion {
  return {
    version: v,
    status: 'running',
    desired: 'running',
    error: null,
    created: '2024-05-01T10:00:00Z',
    updated: '2024-05-01T10:00:00Z',
    entrypoints: ['predict'],
    ...patch
  };
}

export function service(name: string, patch: Partial<IService> = {}): IService {
  return {
    name,
    main_version: '0.1.0',
    previous_main: null,
    status: 'running',
    traffic: {},
    entrypoints: [{ name: 'predict', signature: '(data)' }],
    versions: [version('0.1.0')],
    ...patch
  };
}

/** A promise and its resolvers, for answers the test releases when it wants. */
export function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Let pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await Promise.resolve();
  }
  await new Promise(resolve => setImmediate(resolve));
}
