/**
 * Redraw a part of the page only when its data changed, so a refresh every few seconds
 * neither flickers nor takes the keyboard focus away.
 */

import { stableStringify } from '../core/diff';

const drawn = new Map<string, string>();

/** Replace `container`'s children with `build()` unless `data` is what `part` last showed. */
export function redraw(
  part: string,
  container: HTMLElement,
  data: unknown,
  build: () => Node[]
): void {
  const signature = stableStringify(data);
  if (drawn.get(part) === signature) {
    return;
  }
  drawn.set(part, signature);
  const active = document.activeElement;
  const focused =
    active instanceof HTMLElement && container.contains(active) ? active.dataset.key : undefined;
  container.replaceChildren(...build());
  if (focused) {
    const again = container.querySelector<HTMLElement>(`[data-key="${CSS.escape(focused)}"]`);
    if (again && !(again as HTMLButtonElement).disabled) {
      again.focus();
    }
  }
}

/** Draw `part` (every part when omitted) again next time, whatever its data. */
export function forget(part?: string): void {
  if (part === undefined) {
    drawn.clear();
  } else {
    drawn.delete(part);
  }
}
