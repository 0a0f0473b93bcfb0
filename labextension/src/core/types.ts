/**
 * The JSON the jupyter-server extension answers under `jupyter-deploy/api/`, and the
 * manager's own API that the dashboard calls (a service is the same JSON in both).
 *
 * Nothing in `src/core/` imports JupyterLab or touches the DOM: it runs in
 * Node for the unit tests as it does in the browser, in the sidebar and in the dashboard.
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

/** How a service's calls are shared beyond main (`PUT /api/services/{name}/traffic`). */
export interface ITraffic {
  canary?: { version: string; weight: number } | null;
  shadows?: string[];
  /** Per shadow: calls compared with main's answer, and how many answers differed. */
  shadow_stats?: Record<string, { compared: number; differ: number }>;
}

export interface IService {
  name: string;
  main_version: string | null;
  previous_main?: string | null;
  status: string;
  traffic?: ITraffic | null;
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

/** Memory and CPU time of one running version (`GET /api/services/{name}/usage`). */
export interface IUsage {
  memory_mb: number;
  cpu_seconds: number;
}

/** `POST /api/login` on the manager. */
export interface ILoginAnswer {
  token: string;
  token_id: string;
  username: string;
  scope: string;
}

/** `GET /api/whoami` on the manager. */
export interface IWhoami {
  username: string;
  scope: string;
  service: string | null;
  role: string | null;
}

/** `GET /api/health` on the manager. */
export interface IHealth {
  status: string;
  runtime: string;
  version?: string;
}

/** One entry of `GET /api/events`, newest first. */
export interface IEvent {
  time: string;
  service: string | null;
  version: string | null;
  kind: string;
  message: string;
}

/** One entry of `GET /api/tokens` (never the secret). */
export interface IToken {
  id: string;
  username: string;
  scope: string;
  service: string | null;
  note: string | null;
  created: string | null;
  expires_at: string | null;
  revoked: boolean;
  active: boolean;
}

/** `POST /api/tokens`: the secret is in this answer only. */
export interface ICreatedToken {
  token: string;
  id: string;
  scope: string;
  service: string | null;
  expires_at: string | null;
}

/** One entry of `GET /api/users`. */
export interface IUser {
  username: string;
  role: string;
  created: string | null;
}
