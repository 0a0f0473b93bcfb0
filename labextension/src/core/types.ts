/**
 * The JSON the jupyter-server extension answers under `jupyter-deploy/api/`.
 *
 * Nothing in `src/core/` imports JupyterLab or touches the DOM: it runs in
 * Node for the unit tests as it does in the browser.
 */

/** `GET status`, and the answer of `POST login` / `POST logout`. */
export interface IStatus {
  manager_url: string | null;
  public_url: string | null;
  logged_in: boolean;
  username: string | null;
  role: string | null;
  reachable: boolean;
  message: string | null;
  reason: string | null;
}

export interface IEntrypoint {
  name: string;
  signature?: string;
  [key: string]: unknown;
}

export interface IVersion {
  version: string;
  status: string;
  desired?: string | null;
  error?: string | null;
  created?: string | null;
  updated?: string | null;
  entrypoints?: string[];
  [key: string]: unknown;
}

export interface IService {
  name: string;
  main_version: string | null;
  previous_main?: string | null;
  status: string;
  traffic?: Record<string, unknown> | null;
  entrypoints?: IEntrypoint[];
  versions: IVersion[];
  [key: string]: unknown;
}

/** `GET services`. */
export interface IServiceList {
  services: IService[];
}

/** The body of every error answer. */
export interface IErrorBody {
  message?: string;
  reason?: string;
}

/** `POST login` body. */
export interface ICredentials {
  url: string;
  username: string;
  password: string;
}

/** Actions on a whole service or on one version. */
export type LifecycleAction = 'stop' | 'start' | 'restart';

/** What the sidebar shows; also its `.jd-state[data-state]`. */
export type ViewState =
  | 'loading'
  | 'login'
  | 'unreachable'
  | 'empty'
  | 'list'
  | 'error';
