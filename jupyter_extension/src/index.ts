import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, IFrame, MainAreaWidget, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

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
  // no ILabShell: app.shell is JupyterLab's or Notebook 7's, and both have a left area and a main area
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const { commands, shell } = app;

    const openDashboard = (cluster: IClusterModel, page: string) => {
      const dashboard = cluster.dashboards.find(d => d.page === page);
      if (!dashboard) {
        void showErrorMessage('labcluster', `${cluster.name} has no ${page} dashboard (it runs none)`);
        return;
      }
      const id = `labcluster-dashboard-${cluster.id}-${page}`;
      const open = Array.from(shell.widgets('main')).find(w => w.id === id);
      if (open) {
        shell.activateById(id);
        return;
      }
      // through the Jupyter server's authenticated proxy (jupyter-server-proxy): no dashboard port is opened
      const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin'] });
      frame.url = URLExt.join(PageConfig.getBaseUrl(), dashboard.path);
      const widget = new MainAreaWidget({ content: frame });
      widget.id = id;
      widget.title.label = `${dashboard.title} (${cluster.name})`;
      widget.title.icon = labclusterIcon;
      widget.title.closable = true;
      shell.add(widget, 'main', { mode: 'split-right' });
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

    const panel = new ClusterPanel({ openDashboard, insertCode });
    panel.title.icon = labclusterIcon;
    shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, panel.id);

    /** The cluster a command's ``id`` names, else the first one; none running is said in a dialog. */
    const clusterFor = async (id: unknown): Promise<IClusterModel | undefined> => {
      const clusters = await requestAPI<IClusterModel[]>('clusters');
      const cluster = clusters.find(c => c.id === id) ?? clusters[0];
      if (!cluster) {
        await showErrorMessage('labcluster', 'No cluster is running: start one first.');
      }
      return cluster;
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
