/**
 * URLs of the jupyter-server extension's API, `<baseUrl>jupyter-deploy/api/...`, and of
 * the manager's own API, `<manager>/api/...`, which the dashboard calls.
 *
 * Every name or version is one path segment, percent-encoded, so a value can
 * never reach another route.
 */

import { LifecycleAction } from './types';

export const API_ROOT = 'jupyter-deploy/api';

/** Join URL parts with single slashes, keeping `scheme://` and a leading slash. */
export function joinUrl(...parts: string[]): string {
  const kept = parts.filter(part => part !== '');
  if (kept.length === 0) {
    return '';
  }
  const head = kept[0];
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(head);
  let joined = kept
    .map((part, i) => {
      let p = part;
      if (i > 0) {
        p = p.replace(/^\/+/, '');
      }
      if (i < kept.length - 1) {
        p = p.replace(/\/+$/, '');
      }
      return p;
    })
    .filter((part, i) => i === 0 || part !== '')
    .join('/');
  if (scheme) {
    const rest = joined.slice(scheme[0].length).replace(/\/{2,}/g, '/');
    joined = scheme[0] + rest;
  } else {
    joined = joined.replace(/\/{2,}/g, '/');
  }
  return joined;
}

/** `?a=1&b=x` from the defined values, in the given order ('' when none). */
export function queryString(
  query: Record<string, string | number | null | undefined>
): string {
  const pairs = Object.keys(query)
    .filter(key => query[key] !== undefined && query[key] !== null)
    .map(
      key =>
        `${encodeURIComponent(key)}=${encodeURIComponent(String(query[key]))}`
    );
  return pairs.length ? `?${pairs.join('&')}` : '';
}

/** The API URL of `segments` (each encoded) under the server's base URL. */
export function apiUrl(baseUrl: string, ...segments: string[]): string {
  return joinUrl(baseUrl, API_ROOT, ...segments.map(encodeSegment));
}

/** `segments`, each encoded, under `baseUrl`; an empty base keeps the URL relative. */
export function pathUrl(baseUrl: string, ...segments: string[]): string {
  return joinUrl(baseUrl, ...segments.map(encodeSegment));
}

function encodeSegment(segment: string): string {
  if (segment === '' || segment === '.' || segment === '..') {
    throw new Error(`not a valid name: ${JSON.stringify(segment)}`);
  }
  return encodeURIComponent(segment);
}

export const Urls = {
  status: (base: string): string => apiUrl(base, 'status'),
  login: (base: string): string => apiUrl(base, 'login'),
  logout: (base: string): string => apiUrl(base, 'logout'),
  services: (base: string): string => apiUrl(base, 'services'),
  service: (base: string, name: string): string =>
    apiUrl(base, 'services', name),
  version: (base: string, name: string, version: string): string =>
    apiUrl(base, 'services', name, 'versions', version),
  action: (
    base: string,
    name: string,
    action: LifecycleAction,
    version?: string | null
  ): string =>
    version
      ? apiUrl(base, 'services', name, 'versions', version, action)
      : apiUrl(base, 'services', name, action),
  promote: (base: string, name: string): string =>
    apiUrl(base, 'services', name, 'promote'),
  logs: (
    base: string,
    name: string,
    options: { tail?: number; version?: string | null } = {}
  ): string =>
    apiUrl(base, 'services', name, 'logs') +
    queryString({
      tail: options.tail,
      version: options.version || undefined
    }),
  docsLink: (base: string, name: string): string =>
    apiUrl(base, 'services', name, 'docs-link')
};

/**
 * The manager's API. The dashboard passes '' as the base: its URLs stay relative to the
 * page, so it also works behind a reverse proxy that mounts the manager under a prefix.
 */
export const ManagerUrls = {
  health: (base: string): string => pathUrl(base, 'api', 'health'),
  login: (base: string): string => pathUrl(base, 'api', 'login'),
  whoami: (base: string): string => pathUrl(base, 'api', 'whoami'),
  events: (base: string): string => pathUrl(base, 'api', 'events'),
  services: (base: string): string => pathUrl(base, 'api', 'services'),
  service: (base: string, name: string): string =>
    pathUrl(base, 'api', 'services', name),
  version: (base: string, name: string, version: string): string =>
    pathUrl(base, 'api', 'services', name, 'versions', version),
  action: (
    base: string,
    name: string,
    action: LifecycleAction,
    version?: string | null
  ): string =>
    version
      ? pathUrl(base, 'api', 'services', name, 'versions', version, action)
      : pathUrl(base, 'api', 'services', name, action),
  promote: (base: string, name: string): string =>
    pathUrl(base, 'api', 'services', name, 'promote'),
  usage: (base: string, name: string): string =>
    pathUrl(base, 'api', 'services', name, 'usage'),
  logs: (
    base: string,
    name: string,
    options: { tail?: number; version?: string | null; follow?: boolean } = {}
  ): string =>
    pathUrl(base, 'api', 'services', name, 'logs') +
    queryString({
      follow: options.follow ? 1 : undefined,
      tail: options.tail,
      version: options.version || undefined
    }),
  tokens: (base: string): string => pathUrl(base, 'api', 'tokens'),
  token: (base: string, id: string): string =>
    pathUrl(base, 'api', 'tokens', id),
  users: (base: string): string => pathUrl(base, 'api', 'users'),
  user: (base: string, username: string): string =>
    pathUrl(base, 'api', 'users', username),
  /**
   * A service's interactive docs page; with a token, handed over in the fragment, which
   * the browser never sends to a server.
   */
  docs: (base: string, name: string, token?: string | null): string =>
    pathUrl(base, 'services', name, 'docs') +
    (token ? `#token=${encodeURIComponent(token)}` : '')
};

/** Widget ids of the main-area tabs (stable hooks for tests). */
export const WidgetIds = {
  sidebar: 'jupyter-deploy-sidebar',
  logs: (name: string): string => `jupyter-deploy-logs-${name}`,
  docs: (name: string): string => `jupyter-deploy-docs-${name}`
};
