/**
 * Main-area tabs: a service's interactive docs, and its log followed live.
 */

import { MainAreaWidget } from '@jupyterlab/apputils';
import { refreshIcon, ToolbarButton } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { DeployApi } from './api';
import { describeError } from './core/errors';
import {
  emptyLogText,
  isAtBottom,
  LOG_TAIL,
  versionChoices
} from './core/logs';
import { Poller } from './core/poller';
import { IService } from './core/types';
import { WidgetIds } from './core/urls';
import { deployIcon } from './icon';

/** Milliseconds between two log polls. */
export const LOG_INTERVAL = 2000;

/** The versions list of the logs tab is refreshed every this many log polls. */
const SERVICE_EVERY = 5;

/** The docs page of a service (Swagger UI on the manager) in an iframe. */
export class DocsView extends Panel {
  constructor(api: DeployApi, name: string) {
    super();
    this.api = api;
    this.name = name;
    this.addClass('jd-docs');

    const message = new Widget();
    message.addClass('jd-docs-message');
    message.node.setAttribute('role', 'status');
    this._message = message.node;
    this.addWidget(message);

    // No sandbox attribute: the page is the manager's, on its own origin, and Swagger UI
    // needs scripts and that origin to call the service. `jp-IFrame` gives JupyterLab's
    // overlay that keeps drags working over the frame.
    this._frame = new Widget();
    this._frame.addClass('jp-IFrame');
    this._frame.addClass('jd-docs-container');
    this._iframe = document.createElement('iframe');
    this._iframe.className = 'jd-docs-frame';
    this._iframe.title = `API docs of ${name}`;
    this._iframe.referrerPolicy = 'no-referrer';
    this._frame.node.appendChild(this._iframe);
    this.addWidget(this._frame);
  }

  readonly api: DeployApi;
  readonly name: string;

  /** The link the frame shows ('' until it is known). */
  get url(): string {
    return this._url;
  }

  /** Ask for a fresh docs link and load it. */
  async load(): Promise<void> {
    this._showMessage(`Loading the docs of ${this.name}…`, false);
    try {
      const url = await this.api.docsLink(this.name);
      this._url = url;
      this._navigate(url);
      this._showMessage('', false);
    } catch (err) {
      this._showMessage(
        `Could not open the docs of ${this.name}: ${describeError(err)}`,
        true
      );
    }
  }

  /** Load `url`, for real even when it is the URL shown (a fragment change alone would not reload). */
  private _navigate(url: string): void {
    if (this._iframe.src !== url) {
      this._iframe.src = url;
      return;
    }
    const again = (): void => {
      this._iframe.removeEventListener('load', again);
      this._iframe.src = url;
    };
    this._iframe.addEventListener('load', again);
    this._iframe.src = 'about:blank';
  }

  private _showMessage(text: string, error: boolean): void {
    this._message.textContent = '';
    this._message.classList.toggle('jd-error', error);
    this._message.hidden = !text;
    if (!text) {
      return;
    }
    const span = document.createElement('span');
    span.textContent = text;
    this._message.appendChild(span);
    if (error) {
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'jd-button jd-button-small';
      retry.dataset.action = 'retry';
      retry.textContent = 'Retry';
      retry.addEventListener('click', () => void this.load());
      this._message.appendChild(retry);
    }
  }

  private _frame: Widget;
  private _iframe: HTMLIFrameElement;
  private _message: HTMLElement;
  private _url = '';
}

export function createDocsPanel(
  api: DeployApi,
  name: string
): MainAreaWidget<DocsView> {
  const content = new DocsView(api, name);
  const panel = new MainAreaWidget({ content });
  panel.id = WidgetIds.docs(name);
  panel.addClass('jd-docs-panel');
  panel.title.label = `${name} docs`;
  panel.title.caption = `Interactive API docs of the service ${name}`;
  panel.title.icon = deployIcon;
  panel.title.closable = true;
  panel.toolbar.addItem(
    'reload',
    new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Reload the docs',
      onClick: () => void content.load()
    })
  );
  panel.toolbar.addItem(
    'open-in-browser',
    new ToolbarButton({
      label: 'Open in a browser tab',
      tooltip: 'Open the docs page in a new browser tab',
      onClick: () => {
        if (content.url) {
          window.open(content.url, '_blank', 'noopener,noreferrer');
        }
      }
    })
  );
  void content.load();
  return panel;
}

/** A service's log, polled while the tab is open and shown. */
export class LogsView extends Widget {
  constructor(api: DeployApi, name: string, version: string | null = null) {
    super();
    this.api = api;
    this.name = name;
    this._version = version;
    this.addClass('jd-logs-view');

    const bar = document.createElement('div');
    bar.className = 'jd-logs-bar';
    const label = document.createElement('label');
    label.className = 'jd-field-inline';
    const caption = document.createElement('span');
    caption.textContent = 'Version';
    this._select = document.createElement('select');
    this._select.className = 'jp-mod-styled jd-select';
    this._select.name = 'version';
    this._select.addEventListener('change', () => {
      this._version = this._select.value || null;
      this._lastText = null;
      this._follow = true;
      void this._poller.refresh();
    });
    label.append(caption, this._select);
    this._state = document.createElement('span');
    this._state.className = 'jd-logs-state';
    this._state.setAttribute('role', 'status');
    bar.append(label, this._state);

    this._error = document.createElement('p');
    this._error.className = 'jd-error';
    this._error.setAttribute('role', 'alert');
    this._error.hidden = true;

    this._pre = document.createElement('pre');
    this._pre.className = 'jd-logs';
    this._pre.tabIndex = 0;
    this._pre.setAttribute('aria-label', `Log of ${name}`);
    this._pre.addEventListener('scroll', () => {
      this._follow = isAtBottom(
        this._pre.scrollTop,
        this._pre.scrollHeight,
        this._pre.clientHeight
      );
    });

    this.node.append(bar, this._error, this._pre);
    this._renderChoices();

    this._poller = new Poller({
      task: () => this._tick(),
      interval: LOG_INTERVAL
    });
  }

  readonly api: DeployApi;
  readonly name: string;

  /** The version shown; null is "main". */
  get version(): string | null {
    return this._version;
  }

  /** Show another version (null: main) and fetch its log now. */
  setVersion(version: string | null): void {
    if (version === this._version) {
      return;
    }
    this._version = version;
    this._lastText = null;
    this._follow = true;
    this._renderChoices();
    void this._poller.refresh();
  }

  refresh(): Promise<void> {
    return this._poller.refresh();
  }

  dispose(): void {
    this._poller.dispose();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._poller.start();
  }

  protected onBeforeDetach(msg: Message): void {
    this._poller.stop();
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._poller.start();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._poller.stop();
  }

  private async _tick(): Promise<void> {
    if (this._ticks % SERVICE_EVERY === 0) {
      try {
        this._service = await this.api.service(this.name);
        this._renderChoices();
      } catch {
        // The log request below reports the same failure.
      }
    }
    this._ticks++;
    const version = this._version;
    try {
      const text = await this.api.logs(this.name, { tail: LOG_TAIL, version });
      if (version !== this._version) {
        return; // the selection changed meanwhile; its own fetch follows
      }
      this._showError('');
      this._setText(text || emptyLogText(this.name, version));
      this._state.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      this._showError(
        `Could not read the log of ${this.name}: ${describeError(err)}`
      );
      this._state.textContent = '';
    }
  }

  private _setText(text: string): void {
    if (text === this._lastText) {
      return;
    }
    const follow = this._follow || this._lastText === null;
    this._lastText = text;
    this._pre.textContent = text;
    if (follow) {
      this._pre.scrollTop = this._pre.scrollHeight;
      this._follow = true;
    }
  }

  private _showError(text: string): void {
    this._error.textContent = text;
    this._error.hidden = !text;
  }

  private _renderChoices(): void {
    const choices = versionChoices(this._service);
    if (
      this._version &&
      !choices.some(choice => choice.value === this._version)
    ) {
      choices.push({ value: this._version, label: this._version });
    }
    const key = JSON.stringify(choices);
    if (key !== this._choicesKey) {
      this._choicesKey = key;
      this._select.textContent = '';
      for (const choice of choices) {
        const option = document.createElement('option');
        option.value = choice.value;
        option.textContent = choice.label;
        this._select.appendChild(option);
      }
    }
    this._select.value = this._version || '';
  }

  private _poller: Poller;
  private _select: HTMLSelectElement;
  private _state: HTMLSpanElement;
  private _error: HTMLParagraphElement;
  private _pre: HTMLPreElement;
  private _service: IService | null = null;
  private _version: string | null;
  private _lastText: string | null = null;
  private _follow = true;
  private _ticks = 0;
  private _choicesKey = '';
}

export function createLogsPanel(
  api: DeployApi,
  name: string,
  version: string | null = null
): MainAreaWidget<LogsView> {
  const content = new LogsView(api, name, version);
  const panel = new MainAreaWidget({ content });
  panel.id = WidgetIds.logs(name);
  panel.addClass('jd-logs-panel');
  panel.title.label = `${name} logs`;
  panel.title.caption = `Log of the service ${name}, refreshed every 2 seconds`;
  panel.title.icon = deployIcon;
  panel.title.closable = true;
  panel.toolbar.addItem(
    'refresh',
    new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Refresh the log now',
      onClick: () => void content.refresh()
    })
  );
  return panel;
}
