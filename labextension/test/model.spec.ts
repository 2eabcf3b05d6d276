/**
 * The sidebar's model: parsing the server's JSON, grouping, filtering,
 * version drift and dataset summaries, on answers shaped like the real ones.
 */
import {
  ModelError,
  edgeCellSource,
  filterSites,
  formatAgo,
  formatRoundTrip,
  groupSites,
  humanBytes,
  isActive,
  labelKeys,
  parseAnnounced,
  parseFleet,
  parseJobs,
  stateCounts,
  summarizeDatasets,
  versionDrift
} from '../src/model';

const VERSIONS = {
  python: '3.11.7',
  dask: '2026.8.0',
  distributed: '2026.8.0',
  cloudpickle: '3.1.3',
  'jupyter-edge': '0.1.0'
};

function shard(
  dataset: string,
  shardName: string,
  bytes: number | null,
  kind = 'local'
) {
  return {
    dataset,
    shard: shardName,
    url: `/data/${dataset}`,
    kind,
    bytes,
    files: bytes === null ? null : 2,
    scanned: 1,
    error: null
  };
}

function site(
  name: string,
  labels: Record<string, string>,
  datasets: Record<string, unknown>,
  extra: Record<string, unknown> = {}
) {
  return {
    name,
    address: `tcp://127.0.0.1:${1000 + name.length}`,
    state: 'running',
    labels,
    datasets,
    gpus: [],
    gpu_state: 'none',
    versions: VERSIONS,
    nthreads: 1,
    running: 0,
    last_seen: 100,
    ...extra
  };
}

const ANSWER = {
  connection: {
    address: 'tcp://127.0.0.1:8786',
    status: 'connected',
    error: null
  },
  versions: VERSIONS,
  time: 105,
  sites: [
    site(
      'paris',
      { region: 'eu', tier: 'store' },
      {
        sensors: shard('sensors', 'paris', 1000),
        weather: shard('weather', 'eu', 200)
      }
    ),
    site(
      'berlin',
      { region: 'eu', tier: 'factory' },
      {
        sensors: shard('sensors', 'berlin', 3000),
        weather: shard('weather', 'eu', 200)
      }
    ),
    site(
      'boston',
      { region: 'us' },
      { archive: shard('archive', 'boston', 50, 's3') },
      {
        gpus: [
          {
            index: 0,
            model: 'A100',
            memory_total: 80e9,
            utilization: 40,
            memory_used: 20e9
          },
          {
            index: 1,
            vendor: 'amd',
            model: 'AMD Radeon PRO W7900',
            memory_total: 48e9,
            unified: false,
            source: 'amdgpu',
            utilization: 37,
            memory_used: 3e9
          }
        ],
        gpu_state: 'amdgpu'
      }
    ),
    site(
      'lab',
      {},
      {},
      {
        labels: { 'edge.executor': 'python,docker,wasm' },
        containers: {
          engine: 'docker',
          version: '20.10.24',
          images: ['edge-python:3.11', 7]
        }
      }
    )
  ]
};

describe('parseFleet', () => {
  it('reads every site, sorted by name, with shards, GPUs and heartbeat', () => {
    const fleet = parseFleet(ANSWER);
    expect(fleet.sites.map(s => s.name)).toEqual([
      'berlin',
      'boston',
      'lab',
      'paris'
    ]);
    expect(fleet.connection).toEqual({
      address: 'tcp://127.0.0.1:8786',
      status: 'connected',
      error: null
    });
    const boston = fleet.sites[1];
    expect(boston.gpus).toEqual([
      {
        // A site of an older version: no vendor, unified or source yet.
        index: 0,
        vendor: 'unknown',
        model: 'A100',
        memoryTotal: 80e9,
        unified: false,
        source: 'declared',
        utilization: 40,
        memoryUsed: 20e9
      },
      {
        index: 1,
        vendor: 'amd',
        model: 'AMD Radeon PRO W7900',
        memoryTotal: 48e9,
        unified: false,
        source: 'amdgpu',
        utilization: 37,
        memoryUsed: 3e9
      }
    ]);
    expect(boston.datasets[0]).toMatchObject({
      dataset: 'archive',
      shard: 'boston',
      kind: 's3',
      bytes: 50
    });
    expect(fleet.sites[0].lastSeen).toBe(100);
  });

  it("reads each site's round trip to the scheduler, when it has one", () => {
    const answer = {
      ...ANSWER,
      sites: [site('far', {}, {}, { rtt: 0.312 }), site('new', {}, {})]
    };
    const [far, fresh] = parseFleet(answer).sites;
    expect(far.rtt).toBe(0.312);
    expect(fresh.rtt).toBeNull();
    expect(formatRoundTrip(0.312)).toBe('312 ms');
    expect(formatRoundTrip(0.0002)).toBe('1 ms');
    expect(formatRoundTrip(1.25)).toBe('1.3 s');
  });

  it('keeps offline sites, with when and why they left; their lone shards are marked', () => {
    const answer = {
      ...ANSWER,
      sites: [
        site('berlin', {}, { sensors: shard('sensors', 'berlin', 10) }),
        site(
          'paris',
          {},
          {
            sensors: shard('sensors', 'paris', 20),
            logs: shard('logs', 'paris', 5)
          },
          {
            state: 'offline',
            offline_since: 90,
            offline_reason: 'silent for 31 s'
          }
        )
      ]
    };
    const [berlin, paris] = parseFleet(answer).sites;
    expect(berlin.offlineSince).toBeNull();
    expect(paris).toMatchObject({
      state: 'offline',
      offlineSince: 90,
      offlineReason: 'silent for 31 s'
    });
    const summaries = summarizeDatasets([berlin, paris]);
    expect(summaries.find(d => d.name === 'sensors')!.offlineShards).toEqual([
      'paris'
    ]);
    expect(summaries.find(d => d.name === 'logs')!.offlineShards).toEqual([
      'paris'
    ]);
    expect(formatAgo(42)).toBe('42 s');
    expect(formatAgo(180)).toBe('3 min');
    expect(formatAgo(7200)).toBe('2 h');
  });

  it('keeps an unreachable scheduler as a state, with no sites', () => {
    const fleet = parseFleet({
      connection: {
        address: 'tcp://gone:1',
        status: 'unreachable',
        error: 'OSError: timed out'
      },
      sites: []
    });
    expect(fleet.connection.status).toBe('unreachable');
    expect(fleet.connection.error).toBe('OSError: timed out');
    expect(fleet.sites).toEqual([]);
  });

  it('reads which sites run containers, and which images they hold', () => {
    const sites = parseFleet(ANSWER).sites;
    expect(sites.find(s => s.name === 'lab')!.containers).toEqual({
      engine: 'docker',
      version: '20.10.24',
      images: ['edge-python:3.11'],
      error: null
    });
    expect(sites.find(s => s.name === 'berlin')!.containers).toBeNull();
  });

  it('ignores fields it does not know and survives missing optional ones', () => {
    const fleet = parseFleet({
      connection: { status: 'connected' },
      sites: [{ name: 'x', future: 1 }]
    });
    expect(fleet.sites[0]).toMatchObject({
      name: 'x',
      state: 'unknown',
      labels: {},
      datasets: [],
      gpus: [],
      running: 0,
      lastSeen: null
    });
  });

  it('refuses answers that are not a fleet', () => {
    expect(() => parseFleet('nope')).toThrow(ModelError);
    expect(() => parseFleet({ sites: [] })).toThrow('no connection');
    expect(() =>
      parseFleet({ connection: {}, sites: [{ address: 'tcp://a:1' }] })
    ).toThrow('without a name');
  });
});

describe('groupSites', () => {
  const sites = parseFleet(ANSWER).sites;

  it('groups by a label, groups sorted by value, sites without it last', () => {
    const groups = groupSites(sites, 'region');
    expect(groups.map(g => [g.value, g.sites.map(s => s.name)])).toEqual([
      ['eu', ['berlin', 'paris']],
      ['us', ['boston']],
      [null, ['lab']]
    ]);
  });

  it('orders groups by value, not by which site came first', () => {
    const mixed = parseFleet({
      connection: { status: 'connected' },
      sites: [
        site('atlanta', { region: 'us' }, {}),
        site('bonn', { region: 'eu' }, {}),
        site('cairo', { region: 'af' }, {})
      ]
    }).sites;
    expect(groupSites(mixed, 'region').map(g => g.value)).toEqual([
      'af',
      'eu',
      'us'
    ]);
  });

  it('makes one group of everything without a key', () => {
    expect(groupSites(sites, null)).toEqual([{ value: null, sites }]);
    expect(groupSites(sites, '')).toHaveLength(1);
  });

  it('lists the label keys to group by', () => {
    expect(labelKeys(sites)).toEqual(['edge.executor', 'region', 'tier']);
  });
});

describe('filterSites', () => {
  const sites = parseFleet(ANSWER).sites;
  const names = (text: string) => filterSites(sites, text).map(s => s.name);

  it('matches names, datasets, labels, GPUs; every word must match', () => {
    expect(names('')).toEqual(['berlin', 'boston', 'lab', 'paris']);
    expect(names('par')).toEqual(['paris']);
    expect(names('weather')).toEqual(['berlin', 'paris']);
    expect(names('region=eu')).toEqual(['berlin', 'paris']);
    expect(names('gpu')).toEqual(['boston']);
    expect(names('a100')).toEqual(['boston']);
    expect(names('amd')).toEqual(['boston']);
    expect(names('eu factory')).toEqual(['berlin']);
    expect(names('nothing-here')).toEqual([]);
    expect(names('containers')).toEqual(['lab']);
    expect(names('edge-python')).toEqual(['lab']);
    expect(names('wasm')).toEqual(['lab']);
  });

  it('is case-insensitive', () => {
    expect(names('BERLIN')).toEqual(['berlin']);
  });
});

describe('versionDrift', () => {
  const server = VERSIONS;

  it('flags packages that differ, and Python only on major.minor', () => {
    const [s] = parseFleet({
      connection: { status: 'connected' },
      sites: [
        site(
          'old',
          {},
          {},
          {
            versions: { ...VERSIONS, distributed: '2025.1.0', python: '3.11.2' }
          }
        )
      ]
    }).sites;
    expect(versionDrift(s, server)).toEqual([
      { name: 'distributed', site: '2025.1.0', server: '2026.8.0' }
    ]);
  });

  it('flags another Python minor version', () => {
    const [s] = parseFleet({
      connection: { status: 'connected' },
      sites: [
        site('py', {}, {}, { versions: { ...VERSIONS, python: '3.12.1' } })
      ]
    }).sites;
    expect(versionDrift(s, server).map(d => d.name)).toEqual(['python']);
  });

  it('says nothing when the server sent no versions', () => {
    expect(versionDrift(parseFleet(ANSWER).sites[0], {})).toEqual([]);
  });
});

describe('summarizeDatasets', () => {
  it('counts a replicated shard once and lists who holds each shard', () => {
    const summaries = summarizeDatasets(parseFleet(ANSWER).sites);
    expect(summaries.map(d => d.name)).toEqual([
      'archive',
      'sensors',
      'weather'
    ]);
    const weather = summaries[2];
    expect(weather.shards).toEqual({ eu: ['berlin', 'paris'] });
    expect(weather.bytes).toBe(200);
    expect(weather.sites).toEqual(['berlin', 'paris']);
    const sensors = summaries[1];
    expect(sensors.bytes).toBe(4000);
    expect(sensors.shards).toEqual({ berlin: ['berlin'], paris: ['paris'] });
    expect(summaries[0].kinds).toEqual(['s3']);
  });
});

describe('jobs', () => {
  const answer = {
    connection: { status: 'connected' },
    jobs: [
      {
        id: 'ab12cd34',
        source: 'df.describe()',
        owner: 'ana',
        created: 1,
        state: 'running',
        request: { data: 'sensors' },
        executions: [
          {
            id: 'ab12cd34.0',
            site: 'berlin',
            dataset: 'sensors',
            shard: 'berlin',
            state: 'done',
            attempt: 1,
            error: null,
            bytes_returned: 10
          },
          {
            id: 'ab12cd34.1',
            site: 'paris',
            dataset: 'sensors',
            shard: 'paris',
            state: 'running',
            attempt: 1,
            error: null,
            bytes_returned: null
          }
        ]
      }
    ]
  };

  it('parses executions and counts their states', () => {
    const [job] = parseJobs(answer);
    expect(job.executions.map(e => [e.site, e.state])).toEqual([
      ['berlin', 'done'],
      ['paris', 'running']
    ]);
    expect(stateCounts(job)).toEqual({ done: 1, running: 1 });
    expect(isActive(job)).toBe(true);
  });

  it('knows a job whose executions all ended cannot be cancelled', () => {
    const [job] = parseJobs({
      jobs: [
        {
          ...answer.jobs[0],
          executions: [
            { ...answer.jobs[0].executions[0], state: 'timed-out' },
            { ...answer.jobs[0].executions[1], state: 'lost' }
          ]
        }
      ]
    });
    expect(isActive(job)).toBe(false);
  });

  it('refuses an answer without a job list', () => {
    expect(() => parseJobs({ connection: {} })).toThrow(ModelError);
  });
});

describe('helpers', () => {
  it('reads announced fleets and drops entries without an address', () => {
    expect(
      parseAnnounced([
        { address: 'tcp://a:1', pid: 7, embedded: true, since: 3 },
        { pid: 8 },
        'x'
      ])
    ).toEqual([{ address: 'tcp://a:1', pid: 7, embedded: true, since: 3 }]);
    expect(parseAnnounced(undefined)).toEqual([]);
  });

  it('writes the dataset cell the magic expects', () => {
    expect(edgeCellSource('sensors').split('\n')[0]).toBe(
      '%%edge --data sensors'
    );
    expect(edgeCellSource('odd name').split('\n')[0]).toBe(
      '%%edge --data "odd name"'
    );
  });

  it('prints bytes in the CLI units', () => {
    expect(humanBytes(null)).toBe('?');
    expect(humanBytes(999)).toBe('999 B');
    expect(humanBytes(75332)).toBe('75.3 kB');
    expect(humanBytes(80e9)).toBe('80.0 GB');
  });
});
