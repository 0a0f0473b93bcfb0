/**
 * The login form's checks, before anything is sent.
 */

import { ICredentials } from './types';

/** "localhost:8765/" → "http://localhost:8765"; '' stays ''. */
export function normalizeManagerUrl(text: string): string {
  let url = text.trim();
  if (!url) {
    return '';
  }
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    url = `http://${url}`;
  }
  return url.replace(/\/+$/, '');
}

/**
 * What is wrong with the form, in one sentence; '' when it can be sent. Without `url`
 * (the dashboard's form, served by the manager itself; a new user's) only the name and
 * password are checked.
 */
export function loginProblem(
  fields: Omit<ICredentials, 'url'> & { url?: string }
): string {
  const missing: string[] = [];
  if (fields.url !== undefined && !fields.url.trim()) {
    missing.push('the manager URL');
  }
  if (!fields.username.trim()) {
    missing.push('a username');
  }
  if (!fields.password) {
    missing.push('the password');
  }
  if (missing.length) {
    const last = missing.pop() as string;
    const list = missing.length ? `${missing.join(', ')} and ${last}` : last;
    return `Enter ${list}.`;
  }
  if (fields.url === undefined) {
    return '';
  }
  const url = normalizeManagerUrl(fields.url);
  if (!/^https?:\/\//i.test(url)) {
    return `The manager URL must start with http:// or https:// (got ${fields.url.trim()}).`;
  }
  try {
    // eslint-disable-next-line no-new
    new URL(url);
  } catch {
    return `Not a URL: ${fields.url.trim()}.`;
  }
  return '';
}
