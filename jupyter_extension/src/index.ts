import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, IFrame, MainAreaWidget, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import iconSvg from '../style/icon.svg';
import { requestAPI } from './api';
import { IClusterModel } from './model';
import { ClusterPanel } from './panel';

export const labclusterIcon = new LabIcon({ name: 'labcluster:icon', svgstr: iconSvg });

const COMMANDS = {
  start: 'labcluster:start-cluster',
  refresh: 'labcluster:refresh',
  dashboard: 'labcluster:open-dashboard',
  insert: 'labcluster:insert-connect-code'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'labcluster-sidebar:plugin',
  description: "labcluster's sidebar: clusters, workers, live use, dashboards and connect code",
  autoStart: true,
  // ILabShell optional: in Notebook 7 (one document a page, no dock) dashboards open as browser tabs instead
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null
  ) => {
    const { commands, shell } = app;

    /** The cluster's dashboard page, with the URL it is served at: through the Jupyter server's authenticated
     * proxy (jupyter-server-proxy), so no dashboard port is opened to the browser. None is said in a dialog. */
    const dashboardFor = (cluster: IClusterModel, page: string): { title: string; url: string } | null => {
      const dashboard = cluster.dashboards.find(d => d.page === page);
      if (!dashboard) {
        void showErrorMessage('labcluster', `${cluster.name} has no ${page} dashboard (it runs none)`);
        return null;
      }
      return { title: dashboard.title, url: URLExt.join(PageConfig.getBaseUrl(), dashboard.path) };
    };

    /** The dashboard page's Lab tab: the one open already, or a new one (an iframe) added to the main area. */
    const dashboardWidget = (cluster: IClusterModel, page: string): Widget | null => {
      const id = `labcluster-dashboard-${cluster.id}-${page}`;
      const open = Array.from(shell.widgets('main')).find(w => w.id === id);
      const dashboard = open ? null : dashboardFor(cluster, page);
      if (!dashboard) {
        return open ?? null;
      }
      const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin'] });
      frame.url = dashboard.url;
      const widget = new MainAreaWidget({ content: frame });
      widget.id = id;
      widget.title.label = `${dashboard.title} (${cluster.name})`;
      widget.title.icon = labclusterIcon;
      widget.title.closable = true;
      // through the shell, so Lab tracks it as its own tabs (context menu, restore); a drop then moves it
      shell.add(widget, 'main', { mode: 'split-right', activate: false });
      return widget;
    };

    const openDashboard = (cluster: IClusterModel, page: string) => {
      if (!labShell) {
        const dashboard = dashboardFor(cluster, page);
        if (dashboard) {
          window.open(dashboard.url, '_blank', 'noopener');
        }
        return;
      }
      const widget = dashboardWidget(cluster, page);
      if (widget) {
        shell.activateById(widget.id);
      }
    };

    const insertCode = (code: string) => {
      const current = notebooks?.currentWidget;
      if (!current) {
        void showErrorMessage('labcluster', 'Open a notebook first: the connect code goes into its active cell.');
        return;
      }
      const notebook = current.content;
      NotebookActions.insertBelow(notebook);
      const cell = notebook.activeCell;
      if (cell) {
        cell.model.sharedModel.setSource(code);
      }
      shell.activateById(current.id);
    };

    const panel = new ClusterPanel({
      openDashboard,
      // dragging a dashboard button into Lab's main area docks the page where it is dropped (a split, a tab)
      dashboardWidget: labShell ? dashboardWidget : null,
      insertCode
    });
    panel.title.icon = labclusterIcon;
    shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, panel.id);

    /** The cluster a command's ``id`` names; without one, the only cluster, or the one the user picks. */
    const clusterFor = async (id: unknown): Promise<IClusterModel | undefined> => {
      let clusters: IClusterModel[];
      try {
        clusters = await requestAPI<IClusterModel[]>('clusters');
      } catch (error) {
        await showErrorMessage('labcluster', (error as Error).message);
        return undefined;
      }
      if (id !== undefined) {
        const named = clusters.find(c => c.id === id);
        if (!named) {
          await showErrorMessage('labcluster', `No running cluster has the id ${id}: it may have stopped.`);
        }
        return named;
      }
      if (clusters.length <= 1) {
        if (!clusters.length) {
          await showErrorMessage('labcluster', 'No cluster is running: start one first.');
        }
        return clusters[0];
      }
      const picker = document.createElement('select');
      for (const c of clusters) {
        const option = document.createElement('option');
        option.value = c.id;
        option.textContent = `${c.name} (${c.address})`;
        picker.appendChild(option);
      }
      const body = new Widget({ node: picker });
      const result = await showDialog({
        title: 'Which cluster?',
        body,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Choose' })]
      });
      return result.button.accept ? clusters.find(c => c.id === picker.value) : undefined;
    };

    commands.addCommand(COMMANDS.start, {
      label: 'labcluster: Start a Cluster…',
      execute: () => panel.startCluster()
    });
    commands.addCommand(COMMANDS.refresh, {
      label: 'labcluster: Refresh the Clusters',
      execute: () => panel.refresh()
    });
    commands.addCommand(COMMANDS.dashboard, {
      label: args => (args.page ? `labcluster: Open the ${args.page} Dashboard` : 'labcluster: Open a Dashboard'),
      execute: async args => {
        const cluster = await clusterFor(args.id);
        if (cluster) {
          openDashboard(cluster, (args.page as string) || 'resources');
        }
      }
    });
    commands.addCommand(COMMANDS.insert, {
      label: 'labcluster: Insert Connect Code',
      execute: async args => {
        const cluster = await clusterFor(args.id);
        if (cluster) {
          insertCode(cluster.connect_code);
        }
      }
    });
    for (const command of Object.values(COMMANDS)) {
      palette?.addItem({ command, category: 'labcluster' });
    }
  }
};

export default plugin;
