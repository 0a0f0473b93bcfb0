/**
 * Times shown as "3 min ago", kept current between redraws, with the exact local time on hover.
 */

import { localTime, timeAgo } from '../core/format';
import { el } from './dom';

export function timeElement(iso: string | null | undefined): HTMLElement {
  if (!iso) {
    return el('span', { class: 'muted', text: '-' });
  }
  return el('time', {
    datetime: iso,
    title: localTime(iso),
    dataset: { ago: '1' },
    text: timeAgo(iso)
  });
}

export function refreshTimes(): void {
  for (const node of Array.from(document.querySelectorAll('time[data-ago]'))) {
    node.textContent = timeAgo(node.getAttribute('datetime'));
  }
}
