/**
 * The "Deployments" panel of the left area.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import {
  ActionKind,
  actionLabel,
  targetKey,
  targetLabel,
  versionActions
} from './core/actions';
import { confirmation, IConfirmation } from './core/confirm';
import { exactTime, timeAgo } from './core/format';
import { loginProblem, normalizeManagerUrl } from './core/login';
import { ISidebarSnapshot, SidebarModel } from './core/model';
import {
  canStop,
  isTransient,
  normalizeStatus,
  statusDescription,
  statusTone
} from './core/status';
import { versionRole } from './core/traffic';
import { IService, IVersion } from './core/types';
import { WidgetIds } from './core/urls';
import { sortVersionsNewestFirst } from './core/versions';
import { deployIcon } from './icon';

/** What the panel asks of the rest of the extension. */
export interface ISidebarHandlers {
  openDocs(name: string): void;
  openLogs(name: string, version?: string | null): void;
  /** A JupyterLab dialog; resolves true when the user accepted. */
  confirm(c: IConfirmation): Promise<boolean>;
}

export class DeploymentsSidebar extends ReactWidget {
  constructor(model: SidebarModel, handlers: ISidebarHandlers) {
    super();
    this.model = model;
    this._handlers = handlers;
    this.id = WidgetIds.sidebar;
    this.addClass('jd-sidebar');
    this.title.icon = deployIcon;
    this.title.caption = 'Deployments';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Deployments');
  }

  readonly model: SidebarModel;

  render(): JSX.Element {
    return <SidebarView model={this.model} handlers={this._handlers} />;
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    document.addEventListener('visibilitychange', this._onVisibility);
    this._onVisibility();
  }

  protected onBeforeDetach(msg: Message): void {
    document.removeEventListener('visibilitychange', this._onVisibility);
    this.model.setVisible(false);
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._onVisibility();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.setVisible(false);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    document.removeEventListener('visibilitychange', this._onVisibility);
    this.model.dispose();
    super.dispose();
  }

  /** Poll only while the panel shows and the browser tab is in front. */
  private _onVisibility = (): void => {
    this.model.setVisible(this.isVisible && !document.hidden);
  };

  private _handlers: ISidebarHandlers;
}

function useSnapshot(model: SidebarModel): ISidebarSnapshot {
  const [snapshot, setSnapshot] = React.useState(model.snapshot);
  React.useEffect(() => {
    setSnapshot(model.snapshot);
    const unsubscribe = model.subscribe(setSnapshot);
    return () => {
      unsubscribe();
    };
  }, [model]);
  return snapshot;
}

/** The current time, moving every 30 s, for "3 min ago". */
function useNow(): number {
  const [now, setNow] = React.useState(() => Date.now());
  React.useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 30000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

interface IViewProps {
  model: SidebarModel;
  handlers: ISidebarHandlers;
}

function SidebarView({ model, handlers }: IViewProps): JSX.Element {
  const snap = useSnapshot(model);
  const now = useNow();
  const { view, status } = snap;
  const loggedIn = !!status?.logged_in;

  const act = React.useCallback(
    async (action: ActionKind, service: IService, version: string | null) => {
      if (!(await handlers.confirm(confirmation(action, service, version)))) {
        return;
      }
      await model.run(action, service.name, version);
    },
    [model, handlers]
  );

  let body: JSX.Element;
  switch (view.state) {
    case 'login':
      body = (
        <LoginForm
          model={model}
          defaultUrl={status?.manager_url || ''}
          defaultUsername={status?.username || 'admin'}
          hint={view.message}
          error={snap.loginError}
          busy={snap.loggingIn}
          canCancel={loggedIn || !!status?.manager_url}
        />
      );
      break;
    case 'unreachable':
      body = (
        <div className="jd-message">
          <h3 className="jd-message-title">Manager unreachable</h3>
          {view.managerUrl && (
            <p>
              Manager: <code className="jd-url">{view.managerUrl}</code>
            </p>
          )}
          <p className="jd-error" role="alert">
            {view.message}
          </p>
          <div className="jd-buttons">
            <RetryButton model={model} />
            <button
              type="button"
              className="jd-button"
              data-action="login"
              onClick={() => model.showLogin(true)}
            >
              Log in to another manager
            </button>
          </div>
        </div>
      );
      break;
    case 'error':
      body = (
        <div className="jd-message">
          <h3 className="jd-message-title">Deployments are unavailable</h3>
          <p className="jd-error" role="alert">
            {view.message}
          </p>
          <div className="jd-buttons">
            <RetryButton model={model} />
          </div>
        </div>
      );
      break;
    case 'empty':
      body = <EmptyState managerUrl={view.managerUrl} />;
      break;
    case 'list':
      body = (
        <ul className="jd-services" aria-label="Services">
          {snap.services.map(service => (
            <ServiceItem
              key={service.name}
              service={service}
              busy={snap.busy}
              onAction={act}
              handlers={handlers}
            />
          ))}
        </ul>
      );
      break;
    default:
      body = (
        <div className="jd-message jd-loading" aria-live="polite">
          <span className="jd-spinner" aria-hidden="true" />
          Loading deployments…
        </div>
      );
  }

  const showActions = view.state === 'list' || view.state === 'empty';
  return (
    <div className="jd-root">
      <header className="jd-header">
        <h2 className="jd-title">Deployments</h2>
        <div className="jd-header-actions">
          {(loggedIn || view.state === 'unreachable' || view.state === 'error') && (
            <button
              type="button"
              className="jd-icon-button"
              data-action="refresh"
              aria-label="Refresh deployments"
              title="Refresh (the list also refreshes every 5 seconds)"
              onClick={() => void model.refresh()}
            >
              <refreshIcon.react tag="span" className="jd-icon" />
            </button>
          )}
        </div>
      </header>
      {loggedIn &&
        (view.state === 'list' ||
          view.state === 'empty' ||
          view.state === 'error') && (
        <div className="jd-whoami">
          <div className="jd-whoami-row">
            <span className="jd-user">
              {status?.username || 'logged in'}
              {status?.role ? ` (${status.role})` : ''}
            </span>
            <button
              type="button"
              className="jd-button jd-button-small"
              data-action="logout"
              aria-label="Log out of the manager"
              title="Log out of the manager"
              onClick={() => void model.logout()}
            >
              Log out
            </button>
          </div>
          <p className="jd-whoami-text">
            Manager <code className="jd-url">{view.managerUrl}</code>
          </p>
        </div>
      )}
      <div className="jd-live" role="status" aria-live="polite">
        {snap.announcement}
      </div>
      {showActions && snap.actionError && (
        <div className="jd-error jd-banner" role="alert">
          <span className="jd-banner-text">{snap.actionError}</span>
          <button
            type="button"
            className="jd-icon-button"
            aria-label="Dismiss this message"
            title="Dismiss"
            onClick={() => model.dismissError()}
          >
            ×
          </button>
        </div>
      )}
      <div
        className="jd-state"
        data-state={view.state}
        aria-busy={view.state === 'loading'}
      >
        <NowContext.Provider value={now}>{body}</NowContext.Provider>
      </div>
    </div>
  );
}

const NowContext = React.createContext<number>(0);

interface ILoginProps {
  model: SidebarModel;
  defaultUrl: string;
  defaultUsername: string;
  hint: string;
  error: string;
  busy: boolean;
  canCancel: boolean;
}

function LoginForm(props: ILoginProps): JSX.Element {
  const { model, hint, busy } = props;
  const [url, setUrl] = React.useState(props.defaultUrl);
  const [urlTouched, setUrlTouched] = React.useState(false);
  const [username, setUsername] = React.useState(props.defaultUsername);
  const [password, setPassword] = React.useState('');
  const [problem, setProblem] = React.useState('');

  // The status may name the manager after the form appeared: take it unless the user typed.
  React.useEffect(() => {
    if (!urlTouched && props.defaultUrl) {
      setUrl(props.defaultUrl);
    }
  }, [props.defaultUrl, urlTouched]);

  const submit = async (event: React.FormEvent): Promise<void> => {
    event.preventDefault();
    const fields = { url, username, password };
    const wrong = loginProblem(fields);
    setProblem(wrong);
    if (wrong) {
      return;
    }
    const ok = await model.login({
      url: normalizeManagerUrl(url),
      username: username.trim(),
      password
    });
    if (ok) {
      setPassword('');
    }
  };

  const error = problem || props.error;
  return (
    <form
      className="jd-login"
      aria-labelledby="jd-login-title"
      aria-describedby={error ? 'jd-login-error' : undefined}
      onSubmit={event => void submit(event)}
      noValidate
    >
      <p id="jd-login-title" className="jd-login-title">
        Log in to a jupyter-deploy manager to see and manage your deployments.
      </p>
      {hint && <p className="jd-hint">{hint}</p>}
      <label className="jd-field">
        <span className="jd-label">Manager URL</span>
        <input
          className="jp-mod-styled jd-input"
          name="url"
          type="text"
          inputMode="url"
          autoComplete="url"
          spellCheck={false}
          placeholder="http://127.0.0.1:8765"
          value={url}
          onChange={e => {
            setUrl(e.target.value);
            setUrlTouched(true);
          }}
        />
      </label>
      <label className="jd-field">
        <span className="jd-label">Username</span>
        <input
          className="jp-mod-styled jd-input"
          name="username"
          type="text"
          autoComplete="username"
          spellCheck={false}
          value={username}
          onChange={e => setUsername(e.target.value)}
        />
      </label>
      <label className="jd-field">
        <span className="jd-label">Password</span>
        <input
          className="jp-mod-styled jd-input"
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={e => setPassword(e.target.value)}
        />
      </label>
      {error && (
        <p className="jd-error" id="jd-login-error" role="alert">
          {error}
        </p>
      )}
      <div className="jd-buttons">
        <button
          type="submit"
          className="jd-button jd-button-accept"
          disabled={busy}
          aria-disabled={busy}
        >
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        {props.canCancel && (
          <button
            type="button"
            className="jd-button"
            data-action="cancel"
            onClick={() => model.showLogin(false)}
          >
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}

/** Retry now; says so while the request is out, so a second failure is visibly a new one. */
function RetryButton({ model }: { model: SidebarModel }): JSX.Element {
  const [busy, setBusy] = React.useState(false);
  const mounted = React.useRef(true);
  React.useEffect(
    () => () => {
      mounted.current = false;
    },
    []
  );
  return (
    <button
      type="button"
      className="jd-button jd-button-accept"
      data-action="retry"
      disabled={busy}
      onClick={async () => {
        setBusy(true);
        try {
          await model.refresh();
        } finally {
          if (mounted.current) {
            setBusy(false);
          }
        }
      }}
    >
      {busy ? 'Retrying…' : 'Retry'}
    </button>
  );
}

function EmptyState({ managerUrl }: { managerUrl: string | null }): JSX.Element {
  return (
    <div className="jd-message jd-empty">
      <h3 className="jd-message-title">No deployments yet</h3>
      <p>
        Deploy a model from a notebook: load the extension, then put{' '}
        <code>%%deploy NAME</code> on top of a cell that defines a function.
      </p>
      <pre className="jd-snippet">
        {'%load_ext jupyter_deploy\n\n%%deploy iris\ndef predict(data):\n    return clf.predict(data)'}
      </pre>
      <p>
        Or open the deploy form in a notebook with{' '}
        <code>jupyter_deploy.panel()</code>.
      </p>
      <p className="jd-muted">
        New services show up here within seconds
        {managerUrl ? (
          <>
            {' '}
            (manager <code className="jd-url">{managerUrl}</code>)
          </>
        ) : null}
        .
      </p>
    </div>
  );
}

function Badge({ status }: { status: string }): JSX.Element {
  const s = normalizeStatus(status);
  return (
    <span
      className={`jd-badge jd-badge-${statusTone(s)}${isTransient(s) ? ' jd-badge-transient' : ''}`}
      data-status={s}
      title={statusDescription(s)}
    >
      {s}
    </span>
  );
}

interface IActionButtonProps {
  action: string;
  label: string;
  description: string;
  disabled?: boolean;
  warn?: boolean;
  onClick: () => void;
}

function ActionButton(props: IActionButtonProps): JSX.Element {
  return (
    <button
      type="button"
      className={`jd-button jd-button-small${props.warn ? ' jd-button-warn' : ''}`}
      data-action={props.action}
      aria-label={props.description}
      title={props.description}
      disabled={props.disabled}
      onClick={props.onClick}
    >
      {props.label}
    </button>
  );
}

interface IServiceItemProps {
  service: IService;
  busy: ReadonlySet<string>;
  onAction: (
    action: ActionKind,
    service: IService,
    version: string | null
  ) => Promise<void>;
  handlers: ISidebarHandlers;
}

function ServiceItem(props: IServiceItemProps): JSX.Element {
  const { service, busy, onAction, handlers } = props;
  const now = React.useContext(NowContext);
  const name = service.name;
  const serviceBusy = busy.has(targetKey(name));
  const versions = React.useMemo(
    () => sortVersionsNewestFirst(service.versions || []),
    [service.versions]
  );
  const entrypoints = (service.entrypoints || [])
    .map(e => e.name)
    .filter(Boolean);
  const stoppable = canStop(service.status);
  const headingId = `jd-service-${name}`;

  return (
    <li
      className="jd-service"
      data-service={name}
      aria-labelledby={headingId}
      aria-busy={serviceBusy}
    >
      <div className="jd-service-header">
        <div className="jd-row">
          <h3 className="jd-service-name" id={headingId}>
            {name}
          </h3>
          <Badge status={service.status} />
          {serviceBusy && <span className="jd-spinner" aria-label="working" />}
        </div>
        <p className="jd-meta">
          {service.main_version ? (
            <>
              main <code>{service.main_version}</code>
            </>
          ) : (
            'no main version'
          )}
          {' · '}
          {versions.length === 1 ? '1 version' : `${versions.length} versions`}
          {entrypoints.length > 0 && (
            <>
              {' · '}
              <span title="Entrypoints: POST /services/NAME/ENTRYPOINT">
                {entrypoints.join(', ')}
              </span>
            </>
          )}
        </p>
        <div className="jd-actions" role="group" aria-label={`${name} actions`}>
          <ActionButton
            action="docs"
            label="Docs"
            description={`Open the interactive API docs of ${name}`}
            onClick={() => handlers.openDocs(name)}
          />
          <ActionButton
            action="logs"
            label="Logs"
            description={`Open the logs of ${name}`}
            onClick={() => handlers.openLogs(name)}
          />
          {stoppable ? (
            <ActionButton
              action="stop"
              label="Stop"
              description={`Stop every running version of ${name}`}
              disabled={serviceBusy}
              onClick={() => void onAction('stop', service, null)}
            />
          ) : (
            <ActionButton
              action="start"
              label="Start"
              description={`Start ${name}`}
              disabled={serviceBusy}
              onClick={() => void onAction('start', service, null)}
            />
          )}
          <ActionButton
            action="delete"
            label="Delete"
            description={`Delete ${name} and all its versions`}
            warn
            disabled={serviceBusy}
            onClick={() => void onAction('delete', service, null)}
          />
        </div>
      </div>
      <ul className="jd-versions" aria-label={`Versions of ${name}`}>
        {versions.map(v => (
          <VersionItem
            key={v.version}
            service={service}
            version={v}
            now={now}
            busy={serviceBusy || busy.has(targetKey(name, v.version))}
            onAction={onAction}
          />
        ))}
      </ul>
    </li>
  );
}

interface IVersionItemProps {
  service: IService;
  version: IVersion;
  now: number;
  busy: boolean;
  onAction: IServiceItemProps['onAction'];
}

function VersionItem(props: IVersionItemProps): JSX.Element {
  const { service, version: v, now, busy, onAction } = props;
  const name = service.name;
  const { main: isMain, previous: isPrevious } = versionRole(service, v.version);
  const when = v.updated || v.created;
  const ago = timeAgo(when, now || Date.now());
  const label = targetLabel(name, v.version);
  const offered = versionActions(service, v);
  return (
    <li
      className={`jd-version${isMain ? ' jd-version-main' : ''}`}
      data-version={v.version}
      data-main={isMain ? 'true' : 'false'}
      aria-busy={busy}
    >
      <div className="jd-row">
        <span className="jd-version-name">{v.version}</span>
        {isMain && (
          <span
            className="jd-tag jd-tag-main"
            title="Calls to the service go to this version"
          >
            main
          </span>
        )}
        {isPrevious && (
          <span
            className="jd-tag"
            title="The previous main, kept running for a rollback"
          >
            previous
          </span>
        )}
        <Badge status={v.status} />
        {ago && (
          <span
            className="jd-time"
            title={`${v.updated ? 'Updated' : 'Created'} ${exactTime(when)}`}
          >
            {ago}
          </span>
        )}
      </div>
      {v.error && <p className="jd-version-error">{v.error}</p>}
      <div className="jd-actions" role="group" aria-label={`${label} actions`}>
        {offered.map(action => (
          <ActionButton
            key={action}
            action={action}
            label={actionLabel(action)}
            description={versionActionDescription(action, label)}
            warn={action === 'delete'}
            disabled={busy}
            onClick={() => void onAction(action, service, v.version)}
          />
        ))}
      </div>
    </li>
  );
}

function versionActionDescription(action: ActionKind, label: string): string {
  return action === 'promote'
    ? `Make ${label} the main version`
    : `${actionLabel(action)} ${label}`;
}
