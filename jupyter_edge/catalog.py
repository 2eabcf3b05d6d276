"""The catalog: what the fleet's sites hold, as they report it.

Pure data, built on the scheduler from site reports and sent to clients as
JSON-able dicts. Nothing here guesses: a site that has not reported is not in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields

__all__ = ["GPU", "Catalog", "DatasetInfo", "DatasetShard", "Site"]


def _from_dict(cls, data: dict):
    """Build ``cls`` from ``data``, ignoring keys a newer peer may add."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class GPU:
    """One GPU at a site. ``index`` numbers the site's GPUs, whatever their vendor;
    ``ordinal`` is the vendor's own number for it (what ``CUDA_VISIBLE_DEVICES``,
    ``ROCR_VISIBLE_DEVICES`` or ``ZE_AFFINITY_MASK`` name). ``unified``: its memory
    is the host's (Jetson, integrated GPUs), and ``memory_total`` says how much.
    ``utilization``/``memory_used`` are live samples, ``None`` where the platform
    exposes none (and for GPUs declared by hand)."""

    index: int
    model: str = "declared"
    memory_total: int | None = None
    utilization: float | None = None
    memory_used: int | None = None
    vendor: str = "unknown"  # "nvidia", "amd", "intel", or "unknown" (declared without --gpu-vendor)
    source: str = "declared"  # where it was found: "nvml", "jetson", "amdgpu", "intel", or "declared"
    unified: bool = False
    ordinal: int | None = None
    render_node: str | None = None  # "renderD128": the DRM node a container needs (AMD, Intel)


@dataclass
class DatasetShard:
    """This site's part of a dataset: one shard, which other sites may replicate."""

    dataset: str
    shard: str
    url: str
    kind: str  # "local" or "s3" (any fsspec protocol name)
    bytes: int | None = None
    files: int | None = None
    scanned: float | None = None
    error: str | None = None  # why the last scan failed, if it did


@dataclass
class Site:
    """One edge site: a Dask worker with a name, labels, datasets and GPUs."""

    name: str
    address: str
    state: str = "running"
    labels: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, DatasetShard] = field(default_factory=dict)
    gpus: list[GPU] = field(default_factory=list)
    gpu_state: str = "none"  # how the GPU list was found: "none", "declared", "not-found", or its sources ("nvml")
    gpu_sources: list[dict] = field(default_factory=list)  # each source looked at: source, state, detail
    versions: dict[str, str] = field(default_factory=dict)
    nthreads: int = 1
    running: int = 0  # executions placed here and not finished, fleet-wide
    last_seen: float | None = None
    containers: dict | None = None  # the engine of a site started with --docker: engine, version, images
    rtt: float | None = None  # seconds of round trip to the scheduler, as the site measures it
    offline_since: float | None = None  # an offline site: when it left the fleet ...
    offline_reason: str | None = None  # ... and why

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Site:
        site = _from_dict(cls, data)
        site.datasets = {k: _from_dict(DatasetShard, v) for k, v in data.get("datasets", {}).items()}
        site.gpus = [_from_dict(GPU, g) for g in data.get("gpus", [])]
        return site


@dataclass
class DatasetInfo:
    """A dataset across the fleet: its shards, who holds each, and its size
    (each shard counted once, however many replicas it has)."""

    name: str
    shards: dict[str, list[str]]  # shard -> names of the sites holding it
    bytes: int | None
    files: int | None
    kinds: list[str]

    @property
    def sites(self) -> list[str]:
        return sorted({s for holders in self.shards.values() for s in holders})

    @property
    def kind(self) -> str:
        return self.kinds[0] if len(self.kinds) == 1 else "mixed"


@dataclass
class Catalog:
    """A snapshot of the fleet: site name -> :class:`Site`."""

    sites: dict[str, Site] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    def __len__(self) -> int:
        return len(self.sites)

    def holders(self, dataset: str) -> dict[str, list[Site]]:
        """Shard -> sites holding it, for one dataset."""
        shards: dict[str, list[Site]] = {}
        for site in self:
            held = site.datasets.get(dataset)
            if held is not None:
                shards.setdefault(held.shard, []).append(site)
        return shards

    def datasets(self) -> dict[str, DatasetInfo]:
        names = sorted({d for site in self for d in site.datasets})
        return {name: self._dataset_info(name) for name in names}

    def _dataset_info(self, name: str) -> DatasetInfo:
        shards = self.holders(name)
        sizes, counts, kinds = [], [], set()
        for holders in shards.values():
            reports = [site.datasets[name] for site in holders]
            kinds.update(r.kind for r in reports)
            measured = [r for r in reports if r.bytes is not None]
            sizes.append(measured[0].bytes if measured else None)
            counts.append(measured[0].files if measured else None)
        return DatasetInfo(
            name=name,
            shards={shard: sorted(s.name for s in holders) for shard, holders in sorted(shards.items())},
            bytes=None if None in sizes else sum(sizes),
            files=None if None in counts else sum(counts),
            kinds=sorted(kinds),
        )

    def to_dict(self) -> dict:
        return {"sites": [site.to_dict() for site in self]}

    @classmethod
    def from_dict(cls, data: dict) -> Catalog:
        sites = (Site.from_dict(s) for s in data.get("sites", []))
        return cls({site.name: site for site in sites})
