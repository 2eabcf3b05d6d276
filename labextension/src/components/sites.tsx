import {
  Button,
  HTMLSelect,
  InputGroup,
  filterIcon
} from '@jupyterlab/ui-components';
import React, { useMemo, useState } from 'react';

import {
  IGPU,
  ISite,
  OWN_LABEL_PREFIX,
  filterSites,
  runsWasm,
  formatAgo,
  formatRoundTrip,
  groupSites,
  humanBytes,
  labelKeys,
  versionDrift
} from '../model';

export interface ISitesProps {
  sites: ISite[];
  serverVersions: Record<string, string>;
  defaultGroupBy: string;
  now: number;
}

/**
 * While at most `SITES_LISTED` sites match, every one is listed. Beyond that
 * each group lists its first `SITES_SHOWN`, and each "Show more" lists
 * `SITES_MORE` more of it: a fleet of a thousand sites renders a few hundred
 * rows on every poll, not every site (the filter finds any of them).
 */
export const SITES_LISTED = 200;
export const SITES_SHOWN = 25;
export const SITES_MORE = 100;

/** Every site, grouped by a label the user picks, with a filter box. */
export function SitesView(props: ISitesProps): JSX.Element {
  const keys = useMemo(() => labelKeys(props.sites), [props.sites]);
  const [picked, setGroupBy] = useState<string | null>(null);
  const [filter, setFilter] = useState('');
  const groupBy =
    picked ?? (keys.includes(props.defaultGroupBy) ? props.defaultGroupBy : '');
  const shown = useMemo(
    () => filterSites(props.sites, filter),
    [props.sites, filter]
  );
  const groups = useMemo(() => groupSites(shown, groupBy), [shown, groupBy]);
  // Rows each group lists for this filter and grouping (another starts at SITES_SHOWN).
  const view = `${groupBy}\u0000${filter}`;
  const [listed, setListed] = useState({
    view,
    rows: {} as Record<string, number>
  });
  const rows = listed.view === view ? listed.rows : {};
  const limit = (group: string) =>
    shown.length <= SITES_LISTED ? Infinity : (rows[group] ?? SITES_SHOWN);

  return (
    <div className="jp-EdgeSites">
      <div className="jp-EdgeSites-controls">
        <InputGroup
          className="jp-EdgeSites-filter"
          type="search"
          placeholder="Filter sites"
          title="Words to match: a name, a dataset, a label (key=value), a state, gpu, or containers"
          aria-label="Filter sites"
          value={filter}
          rightIcon={filterIcon}
          onChange={event => setFilter(event.target.value)}
        />
        <HTMLSelect
          className="jp-EdgeSites-groupBy"
          aria-label="Group sites by label"
          value={groupBy}
          onChange={event => setGroupBy(event.target.value)}
          options={[
            { label: 'no grouping', value: '' },
            ...keys.map(k => ({ label: `by ${k}`, value: k }))
          ]}
        />
      </div>
      <div className="jp-EdgeMuted jp-EdgeSites-count">
        {shown.length === props.sites.length
          ? `${props.sites.length} sites`
          : `${shown.length} of ${props.sites.length} sites`}
      </div>
      {groups.map(group => {
        const id = group.value ?? '\u0000';
        const hidden = Math.max(0, group.sites.length - limit(id));
        return (
          <section
            className="jp-EdgeSites-group"
            key={id}
            data-group={group.value ?? ''}
          >
            {groupBy !== '' && (
              <h3 className="jp-EdgeSites-groupTitle">
                {group.value === null
                  ? `no ${groupBy}`
                  : `${groupBy}=${group.value}`}
                <span className="jp-EdgeMuted"> ({group.sites.length})</span>
              </h3>
            )}
            <ul className="jp-EdgeSites-list">
              {group.sites.slice(0, limit(id)).map(site => (
                <SiteItem
                  key={site.address || site.name}
                  site={site}
                  server={props.serverVersions}
                  now={props.now}
                />
              ))}
            </ul>
            {hidden > 0 && (
              <Button
                className="jp-EdgeSites-more"
                minimal
                small
                title="The filter finds any site"
                onClick={() =>
                  setListed({
                    view,
                    rows: { ...rows, [id]: limit(id) + SITES_MORE }
                  })
                }
              >
                {hidden <= SITES_MORE
                  ? `Show ${hidden} more`
                  : `Show ${SITES_MORE} more (${hidden} not listed)`}
              </Button>
            )}
          </section>
        );
      })}
    </div>
  );
}

function SiteItem(props: {
  site: ISite;
  server: Record<string, string>;
  now: number;
}): JSX.Element {
  const { site } = props;
  const drift = versionDrift(site, props.server);
  const seen =
    site.lastSeen === null
      ? ''
      : `, seen ${Math.max(0, Math.round(props.now - site.lastSeen))} s ago`;
  return (
    <li className="jp-EdgeSite" data-site={site.name} data-state={site.state}>
      <div className="jp-EdgeSite-header">
        <span
          className={`jp-EdgeStatusDot jp-mod-${site.state}`}
          title={`${site.state}${seen}`}
        />
        <span className="jp-EdgeSite-name" title={site.address}>
          {site.name}
        </span>
        {site.state === 'offline' && (
          <span
            className="jp-EdgeSite-offline"
            title={site.offlineReason ?? 'it left the fleet'}
          >
            {site.lastSeen === null
              ? 'offline'
              : `offline, seen ${formatAgo(props.now - site.lastSeen)} ago`}
          </span>
        )}
        {site.rtt !== null && (
          <span
            className="jp-EdgeSite-rtt"
            title="Round trip to the scheduler, as the site measures it"
          >
            {formatRoundTrip(site.rtt)}
          </span>
        )}
        {site.running > 0 && (
          <span className="jp-EdgeSite-running">{site.running} running</span>
        )}
        {drift.length > 0 && (
          <span
            className="jp-EdgeSite-drift"
            title={drift
              .map(d => `${d.name}: site ${d.site}, server ${d.server}`)
              .join('\n')}
          >
            versions differ
          </span>
        )}
      </div>
      {Object.keys(site.labels).length > 0 && (
        <div className="jp-EdgeSite-labels">
          {Object.entries(site.labels).map(([key, value]) => (
            <span
              className={`jp-EdgeLabel${key.startsWith(OWN_LABEL_PREFIX) ? ' jp-mod-own' : ''}`}
              key={key}
              title={
                key.startsWith(OWN_LABEL_PREFIX)
                  ? 'set by the site itself'
                  : undefined
              }
            >{`${key}=${value}`}</span>
          ))}
        </div>
      )}
      {site.datasets.length > 0 && (
        <div className="jp-EdgeSite-datasets">
          {site.datasets.map(shard => (
            <span
              className={`jp-EdgeBadge${shard.error ? ' jp-mod-error' : ''}`}
              key={shard.dataset}
              data-dataset={shard.dataset}
              title={
                shard.error ??
                `${shard.dataset}@${shard.shard} (${shard.kind}): ${shard.files ?? '?'} files`
              }
            >
              {shard.dataset}{' '}
              <span className="jp-EdgeBadge-size">
                {humanBytes(shard.bytes)}
              </span>
            </span>
          ))}
        </div>
      )}
      {site.containers && (
        <div className="jp-EdgeSite-containers">
          <span
            className={`jp-EdgeBadge jp-EdgeBadge-containers${site.containers.error ? ' jp-mod-error' : ''}`}
            title={
              site.containers.error ??
              `images: ${site.containers.images.join(', ') || 'none'}`
            }
          >
            {`containers: ${site.containers.engine} ${site.containers.version}`}
          </span>
          <span className="jp-EdgeMuted">{` ${site.containers.images.length} image${site.containers.images.length === 1 ? '' : 's'}`}</span>
        </div>
      )}
      {runsWasm(site) && (
        <div className="jp-EdgeSite-wasm">
          <span
            className="jp-EdgeBadge jp-EdgeBadge-wasm"
            title="runs WebAssembly modules (%edge run --wasm), sandboxed by wasmtime"
          >
            wasm
          </span>
        </div>
      )}
      {site.gpus.map(gpu => (
        <GPUBar gpu={gpu} key={gpu.index} />
      ))}
    </li>
  );
}

/** One GPU, of any vendor: utilisation and memory as the site last sampled them. */
function GPUBar(props: { gpu: IGPU }): JSX.Element {
  const { gpu } = props;
  const memory =
    gpu.memoryUsed !== null && gpu.memoryTotal
      ? gpu.memoryUsed / gpu.memoryTotal
      : null;
  const live = gpu.utilization !== null;
  const found =
    gpu.source === 'declared'
      ? 'declared by the site, not measured'
      : `found through ${gpu.source}`;
  const shared = gpu.unified ? " (unified: the host's memory)" : '';
  return (
    <div
      className="jp-EdgeGPU"
      data-gpu={gpu.index}
      data-vendor={gpu.vendor}
      title={`${found}${shared}; ${live ? 'live sample' : 'no live samples'}`}
    >
      <span className="jp-EdgeGPU-name">
        {`GPU ${gpu.index} ${gpu.model}`}
        {gpu.vendor !== 'unknown' && (
          <span className="jp-EdgeGPU-vendor">{gpu.vendor}</span>
        )}
      </span>
      <Meter
        label="util"
        fraction={live ? gpu.utilization! / 100 : null}
        text={live ? `${gpu.utilization}%` : 'n/a'}
      />
      <Meter
        label="mem"
        fraction={memory}
        text={
          (memory === null
            ? humanBytes(gpu.memoryTotal)
            : `${humanBytes(gpu.memoryUsed)} / ${humanBytes(gpu.memoryTotal)}`) +
          (gpu.unified ? ' unified' : '')
        }
      />
    </div>
  );
}

function Meter(props: {
  label: string;
  fraction: number | null;
  text: string;
}): JSX.Element {
  const width =
    props.fraction === null
      ? 0
      : Math.min(100, Math.max(0, props.fraction * 100));
  return (
    <div className="jp-EdgeMeter">
      <span className="jp-EdgeMeter-label">{props.label}</span>
      <span className="jp-EdgeMeter-track">
        <span className="jp-EdgeMeter-fill" style={{ width: `${width}%` }} />
      </span>
      <span className="jp-EdgeMeter-text">{props.text}</span>
    </div>
  );
}
