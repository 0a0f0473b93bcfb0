/**
 * The services view: a card per service with its versions (status, traffic role, since
 * when, resources, entrypoints) and the actions the core offers for each.
 */

import {
  ActionKind,
  actionLabel,
  busyLabel,
  doneMessage,
  performAction,
  targetKey,
  targetLabel,
  versionActions
} from '../core/actions';
import { confirmation } from '../core/confirm';
import { ApiError } from '../core/errors';
import { normalizeStatus, statusDescription } from '../core/status';
import { versionRole } from '../core/traffic';
import { IService, IUsage, IVersion } from '../core/types';
import { ManagerUrls } from '../core/urls';
import { mainVersion, sortServices, sortVersionsNewestFirst } from '../core/versions';
import { api } from './api';
import { confirmAction } from './dialog';
import { byId, el } from './dom';
import { renderEvents } from './events';
import { clearError, notify, report } from './messages';
import { refreshNow } from './polling';
import { forget, redraw } from './redraw';
import { logsHash } from './routes';
import { mayDeploy, session } from './session';
import { timeElement } from './times';
import { fillServiceChoices } from './tokens';

interface IShownService extends IService {
  /** Memory and CPU of running versions; empty when the runtime cannot tell. */
  usage: Record<string, IUsage | null>;
}

let services: IShownService[] = [];
/** Key of each action in flight (`promote:iris/0.1.0`) -> what its button says meanwhile. */
const pending = new Map<string, string>();

/** The names of the services shown, for the new-token form. */
function serviceNames(): string[] {
  return services.map(s => s.name);
}

export async function refreshServices(): Promise<void> {
  const [names, events] = await Promise.all([api.serviceNames(), api.events()]);
  const details = await Promise.all(
    names.map(name =>
      api.service(name).catch(err => {
        // Deleted between the two calls: drop it rather than fail the whole refresh.
        if (err instanceof ApiError && err.status === 404) {
          return null;
        }
        throw err;
      })
    )
  );
  const found = sortServices(details.filter((s): s is IService => s !== null));
  // Resource use of running versions; a runtime that cannot tell leaves the column empty.
  const usages = await Promise.all(found.map(s => api.usage(s.name).catch(() => ({}))));
  services = found.map((s, i) => ({ ...s, usage: usages[i] }));
  byId('refreshed').textContent = `updated ${new Date().toLocaleTimeString()}`;
  renderServices();
  renderEvents(events);
  fillServiceChoices(serviceNames());
}

function renderServices(): void {
  const data = { services, pending: [...pending], deploy: mayDeploy() };
  redraw('services', byId('services'), data, () => {
    if (!services.length) {
      return [
        el(
          'div',
          { class: 'card empty' },
          el('p', { text: 'No services yet.' }),
          el(
            'p',
            { class: 'muted' },
            'Deploy one from a notebook with ',
            el('code', { text: 'jupyter_deploy.deploy(...)' }),
            '.'
          )
        )
      ];
    }
    return services.map(serviceCard);
  });
}

function serviceCard(service: IShownService): HTMLElement {
  const name = service.name;
  const headingId = `service-${name}`;
  const main = mainVersion(service);
  return el(
    'article',
    { class: 'card service', 'aria-labelledby': headingId, dataset: { service: name } },
    el(
      'header',
      { class: 'service-head' },
      el(
        'div',
        { class: 'service-title' },
        el('h2', { id: headingId, text: name }),
        statusBadge(service.status),
        el(
          'span',
          { class: 'muted' },
          service.main_version ? `main ${service.main_version}` : 'no main version',
          main ? [' · since ', timeElement(main.updated)] : null,
          typeof service.created_by === 'string' && service.created_by
            ? ` · by ${service.created_by}`
            : null
        )
      ),
      el(
        'div',
        { class: 'service-links' },
        docsLink(name),
        el('a', {
          href: logsHash(name),
          class: 'button',
          dataset: { key: `logs:${name}` },
          'aria-label': `Logs of ${name}`,
          text: 'Logs'
        }),
        mayDeploy()
          ? actionButton('delete', service, null, 'Delete service', `Delete service ${name}`)
          : null
      )
    ),
    el('div', { class: 'table-wrap' }, versionsTable(service))
  );
}

/** A status as the page's badges show it, explained on hover. */
export function statusBadge(status: string): HTMLElement {
  const s = normalizeStatus(status);
  return el('span', { class: `badge badge-${s}`, title: statusDescription(s), text: s });
}

function badge(text: string, kind: string): HTMLElement {
  return el('span', { class: `badge badge-${kind}`, text });
}

/** The service's docs page, handed this session's token in the fragment (never sent to the server). */
function docsLink(name: string): HTMLElement {
  const plain = ManagerUrls.docs('', name);
  const link = el('a', {
    href: plain,
    target: '_blank',
    rel: 'noopener',
    class: 'button',
    dataset: { key: `docs:${name}` },
    'aria-label': `API docs of ${name}`,
    text: 'API docs'
  });
  // Only for the moment of the click, so hovering or copying the link never shows the token.
  const withToken = (): void => {
    const token = session()?.token;
    if (!token) {
      return;
    }
    link.href = ManagerUrls.docs('', name, token);
    setTimeout(() => {
      link.href = plain;
    }, 0);
  };
  link.addEventListener('click', withToken);
  link.addEventListener('auxclick', withToken);
  return link;
}

function versionsTable(service: IShownService): HTMLElement {
  return el(
    'table',
    { class: 'data versions' },
    el('caption', { class: 'visually-hidden', text: `Versions of ${service.name}` }),
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        ['Version', 'Status', 'Since', 'Resources', 'Entrypoints'].map(h =>
          el('th', { scope: 'col', text: h })
        ),
        el('th', { scope: 'col' }, el('span', { class: 'visually-hidden', text: 'Actions' }))
      )
    ),
    el(
      'tbody',
      {},
      sortVersionsNewestFirst(service.versions).map(v => versionRow(service, v))
    )
  );
}

function versionRow(service: IShownService, v: IVersion): HTMLElement {
  const role = versionRole(service, v.version);
  const use = service.usage[v.version];
  return el(
    'tr',
    { dataset: { version: v.version }, class: role.main ? 'is-main' : '' },
    el(
      'td',
      {},
      el('span', { class: 'version', text: v.version }),
      role.main ? badge('main', 'main') : null,
      role.canaryWeight !== null ? badge(`canary ${role.canaryWeight}%`, 'canary') : null,
      role.shadow ? badge('shadow', 'shadow') : null,
      role.shadowStats
        ? el('div', {
            class: 'muted small',
            text: `differs ${role.shadowStats.differ} of ${role.shadowStats.compared}`
          })
        : null
    ),
    el(
      'td',
      {},
      statusBadge(v.status),
      v.error ? el('div', { class: 'version-error', text: v.error }) : null
    ),
    el(
      'td',
      {},
      timeElement(v.updated),
      el('div', { class: 'muted small' }, 'created ', timeElement(v.created))
    ),
    el(
      'td',
      { class: 'usage' },
      use ? `${use.memory_mb} MB` : '',
      use ? el('div', { class: 'muted small', text: `${use.cpu_seconds} s CPU` }) : null
    ),
    el(
      'td',
      {},
      el(
        'ul',
        { class: 'entrypoints' },
        (v.entrypoints || []).map(e =>
          el('li', {}, el('code', { text: `POST /services/${service.name}/${e}` }))
        )
      )
    ),
    el(
      'td',
      { class: 'actions' },
      mayDeploy()
        ? versionActions(service, v).map(action =>
            actionButton(
              action,
              service,
              v.version,
              actionLabel(action),
              `${actionLabel(action)} ${targetLabel(service.name, v.version)}`
            )
          )
        : null
    )
  );
}

function actionButton(
  action: ActionKind,
  service: IService,
  version: string | null,
  text: string,
  ariaLabel: string
): HTMLElement {
  const key = `${action}:${targetKey(service.name, version)}`;
  const busy = pending.get(key);
  const kind = action === 'delete' ? 'danger' : action === 'promote' ? 'primary' : '';
  return el('button', {
    type: 'button',
    class: kind,
    dataset: { key },
    'aria-label': ariaLabel,
    // One action at a time: the next one may depend on what this one changes.
    disabled: !!busy || pending.size > 0,
    'aria-busy': busy ? 'true' : null,
    text: busy || text,
    on: { click: () => void act(action, service, version, key) }
  });
}

/** Confirm, run the call with its button marked busy, then redraw and say what happened. */
async function act(
  action: ActionKind,
  service: IService,
  version: string | null,
  key: string
): Promise<void> {
  if (!(await confirmAction(confirmation(action, service, version)))) {
    return;
  }
  clearError();
  pending.set(key, busyLabel(action));
  renderServices();
  try {
    await performAction(api, action, service.name, version);
    notify(doneMessage(action, service.name, version));
  } catch (err) {
    report(err);
  } finally {
    pending.delete(key);
    // Buttons come back even if the refresh fails; the refresh then says why.
    forget('services');
    renderServices();
    await refreshNow();
  }
}
