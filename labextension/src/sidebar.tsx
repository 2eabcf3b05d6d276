import {
  ReactWidget,
  SidePanel,
  UseSignal,
  refreshIcon,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { AccordionPanel, Widget } from '@lumino/widgets';
import React from 'react';

import { ConnectionView } from './components/connection';
import { DatasetsView } from './components/datasets';
import { JobsView } from './components/jobs';
import { SitesView } from './components/sites';
import { EdgeFleetModel, IPollSettings } from './fleetModel';
import { summarizeDatasets } from './model';
import { edgeIcon } from './icon';

export interface ISidebarOptions {
  poll: IPollSettings;
  groupBy: string;
  onInsertDataset: (dataset: string) => void;
  onCancelJob: (job: string) => Promise<void>;
}

/**
 * The left-side panel: connection, sites, datasets and jobs as accordion
 * sections, like JupyterLab's own running-sessions and debugger panels.
 */
export class EdgeSidebar extends SidePanel {
  constructor(options: ISidebarOptions) {
    super();
    this.id = 'jupyter-edge-sidebar';
    this.addClass('jp-EdgeSidebar');
    this.title.icon = edgeIcon;
    this.title.caption = 'Edge fleet';
    this.model = new EdgeFleetModel(() => this.isVisible, options.poll);
    this._groupBy = options.groupBy;
    const model = this.model;

    const heading = new Widget();
    heading.node.textContent = 'Edge fleet';
    heading.addClass('jp-EdgeSidebar-heading');
    this.header.addWidget(heading);

    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: 'Refresh the fleet',
        onClick: () => void model.refreshNow()
      })
    );

    this.addWidget(
      section('Connection', 'jp-EdgeSidebar-connection', () => (
        <UseSignal signal={model.changed}>
          {() => (
            <ConnectionView
              connection={model.fleet?.connection ?? null}
              announced={model.announced}
              error={model.error}
              onConnect={async address => {
                await model.connect(address);
              }}
            />
          )}
        </UseSignal>
      ))
    );
    this.addWidget(
      section('Sites', 'jp-EdgeSidebar-sites', () => (
        <UseSignal signal={model.changed}>
          {() => (
            <SitesView
              sites={model.fleet?.sites ?? EMPTY}
              serverVersions={model.fleet?.versions ?? {}}
              defaultGroupBy={this._groupBy}
              now={model.fleet?.time ?? Date.now() / 1000}
            />
          )}
        </UseSignal>
      ))
    );
    this.addWidget(
      section('Datasets', 'jp-EdgeSidebar-datasets', () => (
        <UseSignal signal={model.changed}>
          {() => (
            <DatasetsView
              datasets={summarizeDatasets(model.fleet?.sites ?? EMPTY)}
              onInsert={options.onInsertDataset}
            />
          )}
        </UseSignal>
      ))
    );
    this.addWidget(
      section('Jobs', 'jp-EdgeSidebar-jobs', () => (
        <UseSignal signal={model.changed}>
          {() => <JobsView jobs={model.jobs} onCancel={options.onCancelJob} />}
        </UseSignal>
      ))
    );
  }

  readonly model: EdgeFleetModel;

  /** Sites get most of the height; connection the least. */
  protected onAfterAttach(msg: Parameters<Widget['processMessage']>[0]): void {
    super.onAfterAttach(msg);
    if (!this._sized) {
      (this.content as AccordionPanel).setRelativeSizes([1, 5, 2.5, 3]);
      this._sized = true;
    }
  }

  /** Ask at once when shown, rather than waiting out the standby. */
  protected onAfterShow(msg: Parameters<Widget['processMessage']>[0]): void {
    super.onAfterShow(msg);
    void this.model.refreshNow();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.dispose();
    super.dispose();
  }

  private _groupBy: string;
  private _sized = false;
}

const EMPTY: never[] = [];

function section(
  label: string,
  className: string,
  render: () => JSX.Element
): ReactWidget {
  const widget = ReactWidget.create(render());
  widget.addClass(className);
  widget.title.label = label;
  return widget;
}
