import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  Notification
} from '@jupyterlab/apputils';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { DEFAULT_POLL } from './fleetModel';
import { edgeIcon } from './icon';
import { edgeCellSource } from './model';
import { EdgeSidebar } from './sidebar';

const PLUGIN_ID = 'jupyter-edge:plugin';

/** Every command the extension adds, in one namespace. */
export namespace CommandIDs {
  export const open = 'jupyter-edge:open';
  export const refresh = 'jupyter-edge:refresh';
  export const connect = 'jupyter-edge:connect';
  export const insertDatasetCell = 'jupyter-edge:insert-dataset-cell';
  export const cancelJob = 'jupyter-edge:cancel-job';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'The live fleet of jupyter-edge sites in a sidebar: sites, labels, datasets, GPUs, jobs.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILayoutRestorer, ILabShell, ISettingRegistry],
  activate: async (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const { commands, shell } = app;
    const settings = settingRegistry
      ? await settingRegistry.load(PLUGIN_ID).catch(() => null)
      : null;
    const setting = <T>(key: string, fallback: T): T =>
      (settings?.composite[key] as T | undefined) ?? fallback;

    const sidebar = new EdgeSidebar({
      poll: {
        ...DEFAULT_POLL,
        interval: setting('refreshInterval', DEFAULT_POLL.interval)
      },
      groupBy: setting('groupBy', 'region'),
      onInsertDataset: dataset =>
        void commands.execute(CommandIDs.insertDatasetCell, { dataset }),
      onCancelJob: async job => {
        await commands.execute(CommandIDs.cancelJob, { job });
      }
    });
    settings?.changed.connect(() => {
      sidebar.model.updateSettings({
        interval: setting('refreshInterval', DEFAULT_POLL.interval)
      });
    });
    shell.add(sidebar, 'left', { rank: 750, type: 'Edge fleet' });
    restorer?.add(sidebar, sidebar.id);

    commands.addCommand(CommandIDs.open, {
      label: 'Show the Edge Fleet',
      icon: edgeIcon,
      execute: () => {
        if (labShell) {
          labShell.activateById(sidebar.id);
        } else {
          shell.activateById(sidebar.id);
        }
      }
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh the Edge Fleet',
      execute: () => sidebar.model.refreshNow()
    });

    commands.addCommand(CommandIDs.connect, {
      label: 'Watch Another Edge Fleet…',
      execute: async args => {
        let address = typeof args.address === 'string' ? args.address : null;
        if (address === null) {
          const answer = await InputDialog.getText({
            title: 'Scheduler address of the fleet to watch',
            placeholder: 'tcp://scheduler:8786',
            text: sidebar.model.fleet?.connection.address ?? ''
          });
          address = answer.button.accept ? answer.value : null;
        }
        if (address) {
          await sidebar.model.connect(address.trim());
        }
      }
    });

    commands.addCommand(CommandIDs.insertDatasetCell, {
      label: args =>
        args.dataset
          ? `Insert a %%edge --data ${args.dataset} Cell`
          : 'Insert a %%edge Cell for a Dataset',
      execute: async args => {
        const dataset = typeof args.dataset === 'string' ? args.dataset : null;
        if (!dataset) {
          Notification.warning(
            'Pick a dataset in the Edge fleet sidebar to insert its cell.'
          );
          return;
        }
        let panel = notebooks.currentWidget;
        if (!panel) {
          panel = (await commands.execute('notebook:create-new', {
            kernelName: undefined
          })) as NotebookPanel;
        }
        // A notebook that is still opening replaces its cells once its file has
        // loaded, which would drop a cell inserted before then.
        await panel.context.ready;
        insertCell(panel, edgeCellSource(dataset));
        shell.activateById(panel.id);
      }
    });

    commands.addCommand(CommandIDs.cancelJob, {
      label: args =>
        args.job ? `Cancel Edge Job ${args.job}` : 'Cancel an Edge Job',
      execute: async args => {
        const job = typeof args.job === 'string' ? args.job : null;
        if (!job) {
          return;
        }
        try {
          await sidebar.model.cancel(job);
        } catch (error) {
          Notification.error(
            `Could not cancel job ${job}: ${error instanceof Error ? error.message : error}`
          );
        }
      }
    });

    if (palette) {
      const category = 'Edge Fleet';
      for (const command of [
        CommandIDs.open,
        CommandIDs.refresh,
        CommandIDs.connect
      ]) {
        palette.addItem({ command, category });
      }
    }
  }
};

/** Put `source` in the active cell when it is an empty code cell, else in a new cell below. */
function insertCell(panel: NotebookPanel, source: string): void {
  const notebook = panel.content;
  const active = notebook.activeCell;
  const reuse =
    active !== null &&
    active.model.type === 'code' &&
    active.model.sharedModel.getSource().trim() === '';
  if (!reuse) {
    NotebookActions.insertBelow(notebook);
  }
  notebook.activeCell?.model.sharedModel.setSource(source);
}

export default plugin;
