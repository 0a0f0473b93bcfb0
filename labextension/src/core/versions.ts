/**
 * Ordering of versions: newest first.
 */

import { IService, IVersion } from './types';

/** Milliseconds since the epoch of an ISO time, NaN when missing or unreadable. */
export function parseTime(value: string | null | undefined): number {
  if (!value) {
    return NaN;
  }
  // The manager writes UTC; a time without a zone is read as UTC too.
  const text = /(?:[zZ]|[+-]\d\d:?\d\d)$/.test(value) ? value : `${value}Z`;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? Date.parse(value) : ms;
}

/**
 * Compare version strings part by part, numbers as numbers ("0.1.10" > "0.1.9");
 * a release sorts after its pre-releases ("1.0.0" > "1.0.0-rc1").
 */
export function compareVersionStrings(a: string, b: string): number {
  const split = (v: string): Array<string | number> =>
    v
      .split(/[.+_-]|(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)/i)
      .filter(part => part !== '')
      .map(part => (/^\d+$/.test(part) ? Number(part) : part.toLowerCase()));
  const pa = split(a);
  const pb = split(b);
  const n = Math.max(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined || y === undefined) {
      // "1.0" vs "1.0.1": more numbers is newer; "1.0" vs "1.0-rc1": the text part is a pre-release.
      const rest = x === undefined ? y : x;
      const sign = x === undefined ? -1 : 1;
      return typeof rest === 'number' ? sign : -sign;
    }
    if (x === y) {
      continue;
    }
    if (typeof x === 'number' && typeof y === 'number') {
      return x < y ? -1 : 1;
    }
    if (typeof x === 'number') {
      return 1;
    }
    if (typeof y === 'number') {
      return -1;
    }
    return x < y ? -1 : 1;
  }
  return 0;
}

/** Newest first: by creation time, then by version number; a new array. */
export function sortVersionsNewestFirst(versions: IVersion[]): IVersion[] {
  return [...versions].sort((a, b) => {
    const ta = parseTime(a.created);
    const tb = parseTime(b.created);
    if (!Number.isNaN(ta) && !Number.isNaN(tb) && ta !== tb) {
      return tb - ta;
    }
    if (Number.isNaN(ta) !== Number.isNaN(tb)) {
      return Number.isNaN(ta) ? 1 : -1;
    }
    return compareVersionStrings(b.version, a.version);
  });
}

/** Services by name. */
export function sortServices(services: IService[]): IService[] {
  return [...services].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0
  );
}

/** The version that is main, if the service names one it has. */
export function mainVersion(service: IService): IVersion | undefined {
  return service.versions.find(v => v.version === service.main_version);
}
