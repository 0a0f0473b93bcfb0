/**
 * jupyter-deploy's JupyterLab extension: the "Deployments" sidebar and its docs and logs tabs.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  showDialog,
  WidgetTracker
} from '@jupyterlab/apputils';

import { DeployApi } from './api';
import { IConfirmation } from './core/confirm';
import { SidebarModel } from './core/model';
import { WidgetIds } from './core/urls';
import { deployIcon } from './icon';
import { DeploymentsSidebar } from './sidebar';
import { createDocsPanel, createLogsPanel, DocsView, LogsView } from './tabs';

export namespace CommandIDs {
  export const openSidebar = 'jupyter-deploy:open-sidebar';
  export const refresh = 'jupyter-deploy:refresh';
  export const openDocs = 'jupyter-deploy:open-docs';
  export const openLogs = 'jupyter-deploy:open-logs';
}

const CATEGORY = 'Deployments';

async function confirm(c: IConfirmation): Promise<boolean> {
  const accept = c.warn
    ? Dialog.warnButton({ label: c.accept, ariaLabel: c.title })
    : Dialog.okButton({ label: c.accept, ariaLabel: c.title });
  const result = await showDialog({
    title: c.title,
    body: c.body,
    buttons: [Dialog.cancelButton({ label: 'Cancel' }), accept],
    // Enter on a destructive dialog must not delete anything by accident.
    defaultButton: c.warn ? 0 : 1
  });
  return result.button.accept;
}

function nameArg(args: Record<string, unknown>): string {
  const name = args['name'];
  if (typeof name !== 'string' || !name) {
    throw new Error('jupyter-deploy: this command needs a service name ({name})');
  }
  return name;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-deploy:plugin',
  description:
    'The Deployments sidebar: services and versions on a jupyter-deploy manager, with their docs and logs.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const api = new DeployApi(app.serviceManager.serverSettings);
    const model = new SidebarModel(api);

    const docsTracker = new WidgetTracker<MainAreaWidget<DocsView>>({
      namespace: 'jupyter-deploy-docs'
    });
    const logsTracker = new WidgetTracker<MainAreaWidget<LogsView>>({
      namespace: 'jupyter-deploy-logs'
    });

    const find = <T extends MainAreaWidget>(
      tracker: WidgetTracker<T>,
      id: string
    ): T | undefined =>
      tracker.find(widget => widget.id === id && !widget.isDisposed);

    const sidebar = new DeploymentsSidebar(model, {
      openDocs: name => void app.commands.execute(CommandIDs.openDocs, { name }),
      openLogs: (name, version) =>
        void app.commands.execute(CommandIDs.openLogs, {
          name,
          ...(version ? { version } : {})
        }),
      confirm
    });
    app.shell.add(sidebar, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(sidebar, WidgetIds.sidebar);
    }

    app.commands.addCommand(CommandIDs.openSidebar, {
      label: 'Show Deployments',
      caption: 'Show the Deployments sidebar',
      icon: deployIcon,
      execute: () => {
        app.shell.activateById(sidebar.id);
      }
    });

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Deployments',
      caption: 'Ask the manager for the services and their status now',
      execute: () => model.refresh()
    });

    app.commands.addCommand(CommandIDs.openDocs, {
      label: args =>
        args['name'] ? `Open the Docs of ${args['name']}` : 'Open Service Docs',
      caption: 'Open the interactive API docs of a service in a tab',
      icon: deployIcon,
      execute: async args => {
        const name = nameArg(args);
        let panel = find(docsTracker, WidgetIds.docs(name));
        if (!panel) {
          panel = createDocsPanel(api, name);
          app.shell.add(panel, 'main');
          await docsTracker.add(panel);
        }
        app.shell.activateById(panel.id);
        return panel;
      }
    });

    app.commands.addCommand(CommandIDs.openLogs, {
      label: args =>
        args['name'] ? `Open the Logs of ${args['name']}` : 'Open Service Logs',
      caption: 'Follow the log of a service in a tab',
      icon: deployIcon,
      execute: async args => {
        const name = nameArg(args);
        const version =
          typeof args['version'] === 'string' && args['version']
            ? (args['version'] as string)
            : null;
        let panel = find(logsTracker, WidgetIds.logs(name));
        if (!panel) {
          panel = createLogsPanel(api, name, version);
          app.shell.add(panel, 'main');
          await logsTracker.add(panel);
        } else if (version) {
          panel.content.setVersion(version);
        }
        app.shell.activateById(panel.id);
        return panel;
      }
    });

    if (restorer) {
      void restorer.restore(docsTracker, {
        command: CommandIDs.openDocs,
        args: widget => ({ name: widget.content.name }),
        name: widget => widget.content.name
      });
      void restorer.restore(logsTracker, {
        command: CommandIDs.openLogs,
        args: widget => ({ name: widget.content.name }),
        name: widget => widget.content.name
      });
    }

    if (palette) {
      palette.addItem({ command: CommandIDs.openSidebar, category: CATEGORY });
      palette.addItem({ command: CommandIDs.refresh, category: CATEGORY });
    }
  }
};

export default plugin;
