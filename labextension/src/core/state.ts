/**
 * Which view the sidebar shows, decided from what the last refresh learnt.
 */

import { ApiError, describeError, unreachableDetail } from './errors';
import { IService, IStatus, ViewState } from './types';

export interface IViewInputs {
  /** The last `GET status` answer; null before the first one. */
  status: IStatus | null;
  /** Why the last `GET status` failed (then `status` is stale or null). */
  statusError?: ApiError | null;
  /** The last `GET services` answer; null when not fetched (yet). */
  services: IService[] | null;
  servicesError?: ApiError | null;
  /** The user asked for the login form (e.g. to change manager). */
  wantsLogin?: boolean;
}

export interface IView {
  state: ViewState;
  /** The manager the view is about, when known. */
  managerUrl: string | null;
  /**
   * A sentence to show with `unreachable` (the detail under its heading), `error`
   * (what went wrong) and `login` (why the form is there, if not the first login); else ''.
   */
  message: string;
}

export function decideView(inputs: IViewInputs): IView {
  const { status, statusError, services, servicesError } = inputs;
  const managerUrl = status?.public_url || status?.manager_url || null;
  const view = (state: ViewState, message = ''): IView => ({
    state,
    managerUrl,
    message
  });

  if (inputs.wantsLogin) {
    return view('login', status?.logged_in ? '' : loginHint(status));
  }
  if (statusError) {
    switch (statusError.kind) {
      case 'unreachable':
        return view('unreachable', unreachableDetail(statusError));
      case 'not-logged-in':
        return view('login', describeError(statusError, managerUrl));
      default:
        return view('error', describeError(statusError, managerUrl));
    }
  }
  if (status === null) {
    return view('loading');
  }
  if (!status.logged_in) {
    if (status.manager_url && status.reason === 'manager-unreachable') {
      return view('unreachable', unreachableDetail(unreachable(status)));
    }
    return view('login', loginHint(status));
  }
  if (!status.reachable) {
    if (status.reason && status.reason !== 'manager-unreachable') {
      return view(
        'error',
        describeError(
          new ApiError(502, status.reason, status.message || 'the manager failed'),
          managerUrl
        )
      );
    }
    return view('unreachable', unreachableDetail(unreachable(status)));
  }
  if (servicesError) {
    switch (servicesError.kind) {
      case 'unreachable':
        return view('unreachable', unreachableDetail(servicesError));
      case 'not-logged-in':
        return view('login', describeError(servicesError, managerUrl));
      default:
        return view('error', describeError(servicesError, managerUrl));
    }
  }
  if (services === null) {
    return view('loading');
  }
  return view(services.length === 0 ? 'empty' : 'list');
}

function unreachable(status: IStatus): ApiError {
  return new ApiError(502, 'manager-unreachable', status.message || 'no answer');
}

/** Shown above the login form: why it is there, unless it is simply the first login. */
function loginHint(status: IStatus | null): string {
  if (!status || !status.manager_url || !status.message) {
    return '';
  }
  // "not logged in to URL" says nothing the form does not; a refused login does.
  if (/^not logged in/i.test(status.message)) {
    return '';
  }
  return `${status.message.charAt(0).toUpperCase()}${status.message.slice(1)}`;
}
