/**
 * Errors of the API, turned into a kind the sidebar decides on and a sentence a person reads.
 */

import { IErrorBody } from './types';

/**
 * - `unreachable`: the manager (or the server in between) did not answer;
 * - `not-logged-in`: no login, or the manager refused the stored one;
 * - `bad-credentials`: a login with a wrong username or password;
 * - `no-extension`: the jupyter-deploy server extension did not answer its routes;
 * - `forbidden`, `not-found`, `invalid-input`, `conflict`: the request itself;
 * - `server`: the manager or the extension failed; `unknown`: anything else.
 */
export type ErrorKind =
  | 'unreachable'
  | 'not-logged-in'
  | 'bad-credentials'
  | 'no-extension'
  | 'forbidden'
  | 'not-found'
  | 'invalid-input'
  | 'conflict'
  | 'server'
  | 'unknown';

export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly kind: ErrorKind;

  /** `status` 0 means no HTTP answer at all (network failure). */
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
    this.kind = kindOf(status, reason);
  }
}

/** The kind of an answer with this HTTP status and body `reason` ('' when the body had none). */
export function kindOf(status: number, reason: string): ErrorKind {
  switch (reason) {
    case 'manager-unreachable':
    case 'network-error':
      return 'unreachable';
    case 'not-logged-in':
      return 'not-logged-in';
    case 'bad-credentials':
      return 'bad-credentials';
    case 'forbidden':
      return 'forbidden';
    case 'unknown-service':
    case 'unknown-version':
      return 'not-found';
    case 'invalid-input':
      return 'invalid-input';
  }
  if (status === 0) {
    return 'unreachable';
  }
  if (status === 404 && !reason) {
    // Jupyter's own "page not found": nothing is serving jupyter-deploy/api.
    return 'no-extension';
  }
  if (status === 401) {
    return 'not-logged-in';
  }
  if (status === 403) {
    return 'forbidden';
  }
  if (status === 404) {
    return 'not-found';
  }
  if (status === 409) {
    return 'conflict';
  }
  if (status === 400 || status === 422) {
    return 'invalid-input';
  }
  if (status >= 500) {
    return 'server';
  }
  return 'unknown';
}

/** The error for a non-2xx answer; `body` is its parsed JSON (anything else is ignored). */
export function errorFromResponse(
  status: number,
  body: unknown,
  statusText = ''
): ApiError {
  const parsed: IErrorBody =
    body && typeof body === 'object' ? (body as IErrorBody) : {};
  const reason = typeof parsed.reason === 'string' ? parsed.reason : '';
  let message = typeof parsed.message === 'string' ? parsed.message.trim() : '';
  if (!message) {
    message = statusText ? `HTTP ${status} ${statusText}` : `HTTP ${status}`;
  }
  return new ApiError(status, reason, message);
}

/** A request given up on purpose (its AbortController fired): nothing to report. */
export function isAbort(err: unknown): boolean {
  return (
    !!err &&
    typeof err === 'object' &&
    (err as { name?: unknown }).name === 'AbortError'
  );
}

/** Any thrown value as an ApiError: fetch's TypeError ("Failed to fetch") is a network failure. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) {
    return err;
  }
  if (isNetworkFailure(err)) {
    const detail = errorText(err);
    return new ApiError(
      0,
      'network-error',
      detail ? `no answer (${detail})` : 'no answer'
    );
  }
  return new ApiError(-1, '', errorText(err) || 'unexpected error');
}

function isNetworkFailure(err: unknown): boolean {
  if (!err || typeof err !== 'object') {
    return false;
  }
  const e = err as { name?: unknown; message?: unknown };
  // fetch rejects with a TypeError whose message depends on the browser; a TypeError
  // of a bug ("x is undefined") is not a network failure.
  return (
    e.name === 'NetworkError' ||
    e.name === 'AbortError' ||
    (typeof e.message === 'string' &&
      /failed to fetch|networkerror|network request failed|load failed/i.test(
        e.message
      ))
  );
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    return err.message;
  }
  if (typeof err === 'string') {
    return err;
  }
  return '';
}

/** The manager's messages are fragments ("wrong username or password"): start them as sentences. */
export function capitalize(text: string): string {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

function sentence(text: string): string {
  const t = text.trim();
  return /[.!?)]$/.test(t) ? t : `${t}.`;
}

/**
 * A sentence for a person: what went wrong and, where it helps, what to do.
 * `managerUrl` names the manager when it is known.
 */
export function describeError(
  err: unknown,
  managerUrl?: string | null
): string {
  const e = toApiError(err);
  const where = managerUrl ? ` at ${managerUrl}` : '';
  switch (e.kind) {
    case 'unreachable':
      if (e.status === 0) {
        return sentence(
          `Manager unreachable: the request got ${e.message}. Check that Jupyter and the manager are running`
        );
      }
      return sentence(`Manager unreachable${where}: ${e.message}`);
    case 'not-logged-in':
      return sentence(`Not logged in: ${e.message}`);
    case 'bad-credentials':
      return sentence(
        `Login failed: ${e.message || 'wrong username or password'}`
      );
    case 'no-extension':
      return (
        `The jupyter-deploy server extension did not answer (${e.message}). ` +
        'Check that it is installed and enabled (jupyter server extension list), then restart Jupyter.'
      );
    case 'forbidden':
      return sentence(`Not allowed: ${e.message}`);
    case 'not-found':
      return sentence(`Not found: ${e.message}`);
    case 'invalid-input':
      return sentence(`Invalid input: ${e.message}`);
    case 'conflict':
      return sentence(`Refused: ${e.message}`);
    case 'server':
      return sentence(
        e.message.toLowerCase().startsWith('the manager')
          ? capitalize(e.message)
          : `Server error: ${e.message}`
      );
    default:
      return sentence(capitalize(e.message));
  }
}

/**
 * The detail under a "Manager unreachable" heading that already names the manager:
 * the server's own words, or what a request that got no answer means.
 */
export function unreachableDetail(err: unknown): string {
  const e = toApiError(err);
  if (e.status === 0) {
    return sentence(
      `The request got ${e.message}. Check that Jupyter and the manager are running`
    );
  }
  return sentence(capitalize(e.message || 'no answer'));
}

/** "Could not stop iris 0.1.2: Not allowed: …" */
export function describeActionError(
  action: string,
  target: string,
  err: unknown,
  managerUrl?: string | null
): string {
  return `Could not ${action} ${target}: ${describeError(err, managerUrl)}`;
}

/**
 * The manager's own words, as a sentence start, for a page that talks to the manager
 * directly (the dashboard): "Wrong username or password". No answer at all says so.
 */
export function apiMessage(err: unknown): string {
  const e = toApiError(err);
  if (e.status === 0) {
    return 'The manager did not answer. Is it running, and is the network up?';
  }
  return capitalize(e.message.trim());
}
