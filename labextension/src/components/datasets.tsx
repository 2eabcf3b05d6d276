import { Drag } from '@lumino/dragdrop';
import { MimeData } from '@lumino/coreutils';
import React from 'react';

import { IDatasetSummary, edgeCellSource, humanBytes } from '../model';

/** The mime type JupyterLab's notebooks accept cells in when dropped. */
const JUPYTER_CELL_MIME = 'application/vnd.jupyter.cells';

/** Pixels the pointer moves before a press becomes a drag. */
const DRAG_THRESHOLD = 5;

/** Shards a dataset lists; a dataset sharded across a thousand sites says how many more. */
export const SHARDS_SHOWN = 12;
/** Holders a shard names; more replicas than that are counted. */
export const HOLDERS_SHOWN = 4;

export interface IDatasetsProps {
  datasets: IDatasetSummary[];
  onInsert: (dataset: string) => void;
}

/** Datasets across the fleet; click (or drag into a notebook) for a ready cell. */
export function DatasetsView(props: IDatasetsProps): JSX.Element {
  if (props.datasets.length === 0) {
    return (
      <div className="jp-EdgeMuted jp-EdgeEmpty">
        No site reports a dataset.
      </div>
    );
  }
  return (
    <ul className="jp-EdgeDatasets">
      {props.datasets.map(dataset => (
        <li
          className="jp-EdgeDataset"
          key={dataset.name}
          data-dataset={dataset.name}
          role="button"
          tabIndex={0}
          title={`Insert a %%edge --data ${dataset.name} cell (click or drag into a notebook)`}
          onClick={() => props.onInsert(dataset.name)}
          onKeyDown={event => {
            if (event.key === 'Enter') {
              props.onInsert(dataset.name);
            }
          }}
          onMouseDown={event => startDragOnMove(event, dataset.name)}
        >
          <div className="jp-EdgeDataset-header">
            <span className="jp-EdgeDataset-name">{dataset.name}</span>
            <span className="jp-EdgeBadge">{dataset.kinds.join(', ')}</span>
            <span className="jp-EdgeDataset-size">
              {humanBytes(dataset.bytes)}
            </span>
          </div>
          <Shards dataset={dataset} />
        </li>
      ))}
    </ul>
  );
}

/** A dataset's shards and who holds each, the first few when there are many. */
function Shards(props: { dataset: IDatasetSummary }): JSX.Element {
  const { dataset } = props;
  const offline = new Set(dataset.offlineShards);
  const shards = Object.entries(dataset.shards);
  const more = shards.length - SHARDS_SHOWN;
  return (
    <div className="jp-EdgeDataset-shards">
      {shards.slice(0, SHARDS_SHOWN).map(([shard, sites]) => (
        <span
          className={
            offline.has(shard)
              ? 'jp-EdgeDataset-shard jp-mod-offline'
              : 'jp-EdgeDataset-shard'
          }
          key={shard}
          title={
            offline.has(shard)
              ? 'held only by offline sites'
              : sites.length > 1
                ? `${sites.length} replicas`
                : ''
          }
        >
          {shard === sites[0] && sites.length === 1
            ? shard
            : `${shard}: ${holders(sites)}`}
        </span>
      ))}
      {more > 0 && (
        <span
          className="jp-EdgeMuted jp-EdgeDataset-more"
          title={`${offline.size} of ${shards.length} shards held only by offline sites`}
        >{`and ${more} more shards`}</span>
      )}
    </div>
  );
}

/** `berlin, paris`, or for many replicas `site-0000, site-0008, site-0016 and 122 more`. */
function holders(sites: string[]): string {
  if (sites.length <= HOLDERS_SHOWN) {
    return sites.join(', ');
  }
  const named = sites.slice(0, HOLDERS_SHOWN - 1);
  return `${named.join(', ')} and ${sites.length - named.length} more`;
}

/** Start a Lumino drag carrying a notebook cell once the pointer moves past a threshold. */
function startDragOnMove(event: React.MouseEvent, dataset: string): void {
  if (event.button !== 0) {
    return;
  }
  const startX = event.clientX;
  const startY = event.clientY;
  const move = (e: MouseEvent) => {
    if (
      Math.abs(e.clientX - startX) + Math.abs(e.clientY - startY) <
      DRAG_THRESHOLD
    ) {
      return;
    }
    stop();
    const mimeData = new MimeData();
    const cell = {
      cell_type: 'code',
      source: edgeCellSource(dataset),
      metadata: {},
      outputs: [],
      execution_count: null
    };
    mimeData.setData(JUPYTER_CELL_MIME, [cell]);
    const image = document.createElement('div');
    image.className = 'jp-EdgeDragImage';
    image.textContent = `%%edge --data ${dataset}`;
    const drag = new Drag({
      mimeData,
      dragImage: image,
      supportedActions: 'copy',
      proposedAction: 'copy'
    });
    void drag.start(e.clientX, e.clientY);
  };
  const stop = () => {
    document.removeEventListener('mousemove', move, true);
    document.removeEventListener('mouseup', stop, true);
  };
  document.addEventListener('mousemove', move, true);
  document.addEventListener('mouseup', stop, true);
}
