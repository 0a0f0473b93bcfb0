/**
 * The "Recent events" column: what happened to which service, newest first.
 */

import { IEvent } from '../core/types';
import { byId, el } from './dom';
import { redraw } from './redraw';
import { timeElement } from './times';

const EVENTS_SHOWN = 25;

export function renderEvents(all: IEvent[]): void {
  const events = all.slice(0, EVENTS_SHOWN);
  redraw('events', byId('events'), events, () => {
    if (!events.length) {
      return [el('li', { class: 'muted', text: 'Nothing has happened yet.' })];
    }
    return events.map(e =>
      el(
        'li',
        { class: 'event' },
        el(
          'div',
          { class: 'event-head' },
          el(
            'span',
            {},
            el('span', { class: 'badge badge-event', text: e.kind }),
            e.service ? el('strong', { class: 'event-service', text: e.service }) : null
          ),
          timeElement(e.time)
        ),
        el('div', { class: 'event-message', text: e.message })
      )
    );
  });
}
