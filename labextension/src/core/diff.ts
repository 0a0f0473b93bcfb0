/**
 * What changed between two answers of `GET services`: whether to re-render at all,
 * and the changes worth announcing ("iris 0.1.3 is now running").
 */

import { normalizeStatus } from './status';
import { IService, IStatus } from './types';

/** JSON with object keys sorted, so equal data compares equal whatever the key order. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        sorted[k] = (v as Record<string, unknown>)[k];
      }
      return sorted;
    }
    return v;
  });
}

export function sameData(a: unknown, b: unknown): boolean {
  return a === b || stableStringify(a) === stableStringify(b);
}

export interface IStatusChange {
  service: string;
  /** null: the service's own status. */
  version: string | null;
  from: string;
  to: string;
}

export interface IMainChange {
  service: string;
  from: string | null;
  to: string | null;
}

export interface IServicesDiff {
  /** Anything at all differs (the list must be drawn again). */
  changed: boolean;
  added: string[];
  removed: string[];
  /** Versions that appeared in a service that was already there. */
  addedVersions: Array<{ service: string; version: string }>;
  removedVersions: Array<{ service: string; version: string }>;
  statusChanges: IStatusChange[];
  mainChanges: IMainChange[];
}

/** The changes from `prev` (null: nothing known yet) to `next`. */
export function diffServices(
  prev: IService[] | null,
  next: IService[]
): IServicesDiff {
  const diff: IServicesDiff = {
    changed: prev === null || !sameData(prev, next),
    added: [],
    removed: [],
    addedVersions: [],
    removedVersions: [],
    statusChanges: [],
    mainChanges: []
  };
  if (prev === null || !diff.changed) {
    return diff;
  }
  const before = new Map(prev.map(s => [s.name, s]));
  const after = new Map(next.map(s => [s.name, s]));
  for (const [name, service] of after) {
    const old = before.get(name);
    if (!old) {
      diff.added.push(name);
      continue;
    }
    if (normalizeStatus(old.status) !== normalizeStatus(service.status)) {
      diff.statusChanges.push({
        service: name,
        version: null,
        from: normalizeStatus(old.status),
        to: normalizeStatus(service.status)
      });
    }
    if ((old.main_version || null) !== (service.main_version || null)) {
      diff.mainChanges.push({
        service: name,
        from: old.main_version || null,
        to: service.main_version || null
      });
    }
    const oldVersions = new Map(old.versions.map(v => [v.version, v]));
    const newVersions = new Set(service.versions.map(v => v.version));
    for (const v of service.versions) {
      const was = oldVersions.get(v.version);
      if (!was) {
        diff.addedVersions.push({ service: name, version: v.version });
      } else if (normalizeStatus(was.status) !== normalizeStatus(v.status)) {
        diff.statusChanges.push({
          service: name,
          version: v.version,
          from: normalizeStatus(was.status),
          to: normalizeStatus(v.status)
        });
      }
    }
    for (const v of old.versions) {
      if (!newVersions.has(v.version)) {
        diff.removedVersions.push({ service: name, version: v.version });
      }
    }
  }
  for (const name of before.keys()) {
    if (!after.has(name)) {
      diff.removed.push(name);
    }
  }
  return diff;
}

/** Short sentences for a screen reader's live region, one per change that matters. */
export function describeDiff(diff: IServicesDiff): string[] {
  const lines: string[] = [];
  for (const name of diff.added) {
    lines.push(`New service ${name}.`);
  }
  for (const name of diff.removed) {
    lines.push(`Service ${name} was deleted.`);
  }
  for (const { service, version } of diff.addedVersions) {
    lines.push(`New version ${version} of ${service}.`);
  }
  for (const { service, version } of diff.removedVersions) {
    lines.push(`Version ${version} of ${service} was deleted.`);
  }
  for (const { service, to } of diff.mainChanges) {
    if (to) {
      lines.push(`${service}: version ${to} is now main.`);
    }
  }
  for (const change of diff.statusChanges) {
    // A service's status follows its main version: say it once, on the version.
    if (change.version === null) {
      continue;
    }
    lines.push(`${change.service} ${change.version} is now ${change.to}.`);
  }
  return lines;
}

/** Two status answers that would show the same thing. */
export function sameStatus(a: IStatus | null, b: IStatus | null): boolean {
  return sameData(a, b);
}
