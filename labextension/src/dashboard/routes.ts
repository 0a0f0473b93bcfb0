/**
 * The URL fragment picks the view: `#services`, `#logs/NAME[/VERSION]`, `#tokens`, `#users`.
 */

export interface IRoute {
  view: string;
  args: string[];
}

export function currentRoute(): IRoute {
  const [view, ...rest] = location.hash.replace(/^#/, '').split('/');
  return { view: view || 'services', args: rest.map(decodePart) };
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part; // a hand-typed "%" is taken as it is
  }
}

export function logsHash(name: string, version?: string | null): string {
  return `#logs/${encodeURIComponent(name)}${version ? `/${encodeURIComponent(version)}` : ''}`;
}
