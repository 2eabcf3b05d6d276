/**
 * The fleet as the sidebar sees it: the server's JSON, checked and shaped.
 *
 * Pure functions only (no JupyterLab imports), so jest tests them directly and
 * the view stays a rendering of what is here.
 */

export type ConnectionStatus =
  'unset' | 'connected' | 'unreachable' | 'disconnected';

export interface IConnection {
  address: string | null;
  status: ConnectionStatus;
  error: string | null;
}

export interface IAnnouncedFleet {
  address: string;
  pid: number;
  embedded: boolean;
  since: number;
}

export interface IShard {
  dataset: string;
  shard: string;
  kind: string;
  bytes: number | null;
  files: number | null;
  error: string | null;
}

/** Labels under this prefix are the ones a site sets itself (`edge.arch`, `edge.gpu.vendor`, ...). */
export const OWN_LABEL_PREFIX = 'edge.';

/** Whether a site runs WebAssembly modules (it says so in its own `edge.executor` label). */
export function runsWasm(site: ISite): boolean {
  return (site.labels['edge.executor'] ?? '').split(',').includes('wasm');
}

export interface IGPU {
  index: number;
  /** `nvidia`, `amd`, `intel`, or `unknown` (declared without a vendor). */
  vendor: string;
  model: string;
  memoryTotal: number | null;
  /** Its memory is the host's (Jetson, integrated GPUs). */
  unified: boolean;
  /** Where the site found it: `nvml`, `jetson`, `amdgpu`, `intel`, or `declared`. */
  source: string;
  utilization: number | null;
  memoryUsed: number | null;
}

/** A site's container engine, when it was started with `--docker`. */
export interface IContainerEngine {
  engine: string;
  version: string;
  images: string[];
  error: string | null;
}

export interface ISite {
  name: string;
  address: string;
  state: string;
  labels: Record<string, string>;
  datasets: IShard[];
  gpus: IGPU[];
  gpuState: string;
  versions: Record<string, string>;
  running: number;
  lastSeen: number | null;
  containers: IContainerEngine | null;
  /** Seconds of round trip to the scheduler, as the site measures it. */
  rtt: number | null;
  /** A site that left the fleet (state `offline`): when, and why. */
  offlineSince: number | null;
  offlineReason: string | null;
}

export interface IFleet {
  connection: IConnection;
  sites: ISite[];
  /** The Jupyter server's own package versions, to flag sites that differ. */
  versions: Record<string, string>;
  /** The server's clock when it answered (seconds), for "seen 3 s ago". */
  time: number;
}

export interface IExecution {
  id: string;
  site: string;
  dataset: string | null;
  shard: string | null;
  state: string;
  attempt: number;
  error: string | null;
  bytesReturned: number | null;
}

export interface IJob {
  id: string;
  source: string;
  owner: string;
  created: number;
  state: string;
  request: Record<string, unknown>;
  executions: IExecution[];
}

export interface IDatasetSummary {
  name: string;
  kinds: string[];
  bytes: number;
  files: number;
  /** Shard name to the sites holding it (more than one: replicas). */
  shards: Record<string, string[]>;
  sites: string[];
  /** Shards whose every holder is offline now. */
  offlineShards: string[];
}

export interface ISiteGroup {
  /** The label's value, or `null` for sites without the label. */
  value: string | null;
  sites: ISite[];
}

/** Execution states that end an execution (see jupyter_edge/jobs.py). */
export const TERMINAL_STATES = new Set([
  'done',
  'failed',
  'cancelled',
  'timed-out',
  'lost'
]);

/** Packages whose versions must match between the server and a site. */
export const CHECKED_PACKAGES = [
  'jupyter-edge',
  'dask',
  'distributed',
  'cloudpickle',
  'python'
];

// --- parsing -------------------------------------------------------------

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

function strOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function strings(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(value)) {
    for (const [key, v] of Object.entries(value)) {
      if (typeof v === 'string') {
        out[key] = v;
      }
    }
  }
  return out;
}

/** Thrown when the server's answer is not the shape this sidebar knows. */
export class ModelError extends Error {}

export function parseConnection(value: unknown): IConnection {
  if (!isObject(value)) {
    throw new ModelError('the answer has no connection');
  }
  const status = str(value.status, 'disconnected') as ConnectionStatus;
  return {
    address: strOrNull(value.address),
    status,
    error: strOrNull(value.error)
  };
}

export function parseAnnounced(value: unknown): IAnnouncedFleet[] {
  if (!Array.isArray(value)) {
    return [];
  }
  return value
    .filter(isObject)
    .map(a => ({
      address: str(a.address),
      pid: num(a.pid) ?? 0,
      embedded: a.embedded === true,
      since: num(a.since) ?? 0
    }))
    .filter(a => a.address !== '');
}

function parseShard(name: string, value: unknown): IShard {
  const v = isObject(value) ? value : {};
  return {
    dataset: str(v.dataset, name),
    shard: str(v.shard, name),
    kind: str(v.kind, 'local'),
    bytes: num(v.bytes),
    files: num(v.files),
    error: strOrNull(v.error)
  };
}

function parseGPU(value: unknown): IGPU {
  const v = isObject(value) ? value : {};
  return {
    index: num(v.index) ?? 0,
    vendor: str(v.vendor, 'unknown'),
    model: str(v.model, 'GPU'),
    memoryTotal: num(v.memory_total),
    unified: v.unified === true,
    source: str(v.source, 'declared'),
    utilization: num(v.utilization),
    memoryUsed: num(v.memory_used)
  };
}

export function parseSite(value: unknown): ISite {
  if (!isObject(value) || typeof value.name !== 'string') {
    throw new ModelError('a site without a name');
  }
  const datasets = isObject(value.datasets) ? value.datasets : {};
  return {
    name: value.name,
    address: str(value.address),
    state: str(value.state, 'unknown'),
    labels: strings(value.labels),
    datasets: Object.entries(datasets)
      .map(([name, shard]) => parseShard(name, shard))
      .sort((a, b) => a.dataset.localeCompare(b.dataset)),
    gpus: Array.isArray(value.gpus) ? value.gpus.map(parseGPU) : [],
    gpuState: str(value.gpu_state, 'none'),
    versions: strings(value.versions),
    running: num(value.running) ?? 0,
    lastSeen: num(value.last_seen),
    containers: parseContainers(value.containers),
    rtt: num(value.rtt),
    offlineSince: num(value.offline_since),
    offlineReason:
      typeof value.offline_reason === 'string' ? value.offline_reason : null
  };
}

function parseContainers(value: unknown): IContainerEngine | null {
  if (!isObject(value)) {
    return null;
  }
  return {
    engine: str(value.engine, 'docker'),
    version: str(value.version, '?'),
    images: Array.isArray(value.images)
      ? value.images.filter((i): i is string => typeof i === 'string')
      : [],
    error: strOrNull(value.error)
  };
}

/** `GET fleet`: the connection, every site, and the server's versions. */
export function parseFleet(value: unknown): IFleet {
  if (!isObject(value)) {
    throw new ModelError('the fleet answer is not an object');
  }
  const sites = Array.isArray(value.sites) ? value.sites.map(parseSite) : [];
  sites.sort((a, b) => a.name.localeCompare(b.name));
  return {
    connection: parseConnection(value.connection),
    sites,
    versions: strings(value.versions),
    time: num(value.time) ?? Date.now() / 1000
  };
}

function parseExecution(value: unknown): IExecution {
  const v = isObject(value) ? value : {};
  return {
    id: str(v.id),
    site: str(v.site, '?'),
    dataset: strOrNull(v.dataset),
    shard: strOrNull(v.shard),
    state: str(v.state, 'unknown'),
    attempt: num(v.attempt) ?? 1,
    error: strOrNull(v.error),
    bytesReturned: num(v.bytes_returned)
  };
}

export function parseJob(value: unknown): IJob {
  if (!isObject(value) || typeof value.id !== 'string') {
    throw new ModelError('a job without an id');
  }
  return {
    id: value.id,
    source: str(value.source),
    owner: str(value.owner),
    created: num(value.created) ?? 0,
    state: str(value.state, 'unknown'),
    request: isObject(value.request) ? value.request : {},
    executions: Array.isArray(value.executions)
      ? value.executions.map(parseExecution)
      : []
  };
}

/** `GET jobs`: newest first, as the registry keeps them. */
export function parseJobs(value: unknown): IJob[] {
  if (!isObject(value) || !Array.isArray(value.jobs)) {
    throw new ModelError('the jobs answer has no job list');
  }
  return value.jobs.map(parseJob);
}

// --- shaping ---------------------------------------------------------------

/** Every label key any site carries, sorted: what the sites can be grouped by. */
export function labelKeys(sites: ISite[]): string[] {
  const keys = new Set<string>();
  for (const site of sites) {
    Object.keys(site.labels).forEach(k => keys.add(k));
  }
  return [...keys].sort();
}

/**
 * Sites grouped by one label's value, groups sorted by value, sites without
 * the label last. No key (or an empty one): one group of every site.
 */
export function groupSites(sites: ISite[], key: string | null): ISiteGroup[] {
  if (!key) {
    return [{ value: null, sites }];
  }
  const groups = new Map<string | null, ISite[]>();
  for (const site of sites) {
    const value = key in site.labels ? site.labels[key] : null;
    const group = groups.get(value);
    if (group) {
      group.push(site);
    } else {
      groups.set(value, [site]);
    }
  }
  return [...groups.entries()]
    .map(([value, members]) => ({ value, sites: members }))
    .sort((a, b) => {
      if (a.value === null || b.value === null) {
        return a.value === null ? (b.value === null ? 0 : 1) : -1;
      }
      return a.value.localeCompare(b.value);
    });
}

/**
 * Sites matching every word of a filter. A word matches a site's name, a
 * dataset it holds, a label (`key=value`, `key` or `value`), its state, a GPU
 * vendor or model or a container image; `gpu`, `containers` and `wasm` match sites with them.
 */
export function filterSites(sites: ISite[], text: string): ISite[] {
  const words = text
    .toLowerCase()
    .split(/\s+/)
    .filter(w => w !== '');
  if (words.length === 0) {
    return sites;
  }
  return sites.filter(site => {
    const terms = siteTerms(site);
    return words.every(word => terms.some(term => term.includes(word)));
  });
}

const termCache = new WeakMap<ISite, string[]>();

function siteTerms(site: ISite): string[] {
  let terms = termCache.get(site);
  if (!terms) {
    terms = [site.name, site.state, ...site.datasets.map(d => d.dataset)];
    for (const [key, value] of Object.entries(site.labels)) {
      terms.push(`${key}=${value}`);
    }
    if (site.gpus.length > 0) {
      terms.push(
        'gpu',
        ...site.gpus.map(g => g.model),
        ...site.gpus.map(g => g.vendor)
      );
    }
    if (runsWasm(site)) {
      terms.push('wasm');
    }
    if (site.containers) {
      terms.push(
        'containers',
        site.containers.engine,
        ...site.containers.images
      );
    }
    terms = terms.map(t => t.toLowerCase());
    termCache.set(site, terms);
  }
  return terms;
}

/** The checked packages whose versions differ between the server and a site. */
export function versionDrift(
  site: ISite,
  server: Record<string, string>
): { name: string; site: string; server: string }[] {
  const drift = [];
  for (const name of CHECKED_PACKAGES) {
    const mine = server[name];
    const theirs = site.versions[name];
    if (mine === undefined || theirs === undefined) {
      continue;
    }
    // Python must agree on major.minor (pickles cross the wire); the rest exactly.
    const same =
      name === 'python' ? minor(mine) === minor(theirs) : mine === theirs;
    if (!same) {
      drift.push({ name, site: theirs, server: mine });
    }
  }
  return drift;
}

function minor(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}

/** Datasets across the fleet from the sites' own reports: shards, replicas, sizes. */
export function summarizeDatasets(sites: ISite[]): IDatasetSummary[] {
  const byName = new Map<
    string,
    IDatasetSummary & { counted: Set<string>; online: Set<string> }
  >();
  for (const site of sites) {
    for (const shard of site.datasets) {
      let summary = byName.get(shard.dataset);
      if (!summary) {
        summary = {
          name: shard.dataset,
          kinds: [],
          bytes: 0,
          files: 0,
          shards: {},
          sites: [],
          offlineShards: [],
          counted: new Set(),
          online: new Set()
        };
        byName.set(shard.dataset, summary);
      }
      (summary.shards[shard.shard] ??= []).push(site.name);
      summary.sites.push(site.name);
      if (site.state !== 'offline') {
        summary.online.add(shard.shard);
      }
      if (!summary.kinds.includes(shard.kind)) {
        summary.kinds.push(shard.kind);
      }
      // A replica holds the same bytes again: count each shard once.
      if (!summary.counted.has(shard.shard)) {
        summary.counted.add(shard.shard);
        summary.bytes += shard.bytes ?? 0;
        summary.files += shard.files ?? 0;
      }
    }
  }
  return [...byName.values()]
    .map(({ counted: _counted, online, ...summary }) => ({
      ...summary,
      offlineShards: Object.keys(summary.shards)
        .filter(shard => !online.has(shard))
        .sort()
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** How long ago, for people: `12 s`, `3 min`, `2 h`, `4 d`. */
export function formatAgo(seconds: number): string {
  const s = Math.max(0, seconds);
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['min', 60]
  ] as const) {
    if (s >= size) {
      return `${Math.round(s / size)} ${unit}`;
    }
  }
  return `${Math.round(s)} s`;
}

/** A round trip for people: `4 ms`, `310 ms`, `1.2 s`. */
export function formatRoundTrip(seconds: number): string {
  if (seconds < 1) {
    return `${Math.max(1, Math.round(seconds * 1000))} ms`;
  }
  return `${seconds.toFixed(1)} s`;
}

/** Execution states of a job, counted: `{done: 3, running: 1}`. */
export function stateCounts(job: IJob): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const ex of job.executions) {
    counts[ex.state] = (counts[ex.state] ?? 0) + 1;
  }
  return counts;
}

/** Whether a job still has executions that can be cancelled. */
export function isActive(job: IJob): boolean {
  return job.executions.some(ex => !TERMINAL_STATES.has(ex.state));
}

/** The cell a dataset inserts into a notebook. */
export function edgeCellSource(dataset: string): string {
  const name = /^[\w.-]+$/.test(dataset) ? dataset : JSON.stringify(dataset);
  return `%%edge --data ${name}\n# runs at every site that holds ${dataset}; \`dataset\` is this site's shard\ndataset.path`;
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Bytes as people read them, in the units the CLI's tables use (decimal). */
export function humanBytes(bytes: number | null): string {
  if (bytes === null) {
    return '?';
  }
  let value = bytes;
  for (const unit of UNITS) {
    if (value < 1000 || unit === 'TB') {
      return unit === 'B'
        ? `${value.toFixed(0)} B`
        : `${value.toFixed(1)} ${unit}`;
    }
    value /= 1000;
  }
  return `${bytes} B`;
}
