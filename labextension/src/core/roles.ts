/**
 * What a user's role lets them do, so a page offers only what the manager would allow
 * (it enforces the same on every route and answers 403 otherwise).
 */

/** Deploy, change and delete services, create tokens: admins and deployers (viewers read and invoke). */
export function canDeploy(role: string | null | undefined): boolean {
  return role === 'admin' || role === 'deployer';
}

/** Manage users: an admin holding an admin-scope token. */
export function canManageUsers(
  role: string | null | undefined,
  scope: string | null | undefined
): boolean {
  return role === 'admin' && scope === 'admin';
}
