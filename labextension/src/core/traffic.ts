/**
 * The part a version plays in its service's traffic: main, the previous main kept for a
 * rollback, a canary taking a share of main's calls, a shadow getting a copy of them.
 */

import { IService } from './types';

export interface IVersionRole {
  main: boolean;
  /** The previous main, kept running for an instant rollback. */
  previous: boolean;
  /** The canary's share of main's calls in percent; null when not the canary. */
  canaryWeight: number | null;
  shadow: boolean;
  /** For a shadow: calls compared with main, and how many answered differently. */
  shadowStats: { compared: number; differ: number } | null;
}

export function versionRole(service: IService, version: string): IVersionRole {
  const traffic = service.traffic || {};
  const main = version === service.main_version;
  const canary =
    traffic.canary && traffic.canary.version === version ? traffic.canary : null;
  const shadow = (traffic.shadows || []).includes(version);
  return {
    main,
    previous: !main && version === (service.previous_main || null),
    canaryWeight: canary ? canary.weight : null,
    shadow,
    shadowStats: (shadow && traffic.shadow_stats?.[version]) || null
  };
}
