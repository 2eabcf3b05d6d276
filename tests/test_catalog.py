"""The catalog: serialisation, holders and dataset aggregation. Pure, no cluster."""

from __future__ import annotations

import json

import pytest

from jupyter_edge.catalog import GPU, Catalog, DatasetInfo, DatasetShard, Site


def shard(
    dataset: str, name: str, *, kind: str = "local", bytes: int | None = None, files: int | None = None, **kw
) -> DatasetShard:
    url = f"/data/{dataset}/{name}" if kind == "local" else f"{kind}://bucket/{dataset}/{name}"
    return DatasetShard(dataset, name, url, kind, bytes=bytes, files=files, **kw)


def site(name: str, *shards: DatasetShard, labels: dict[str, str] | None = None, gpus: int = 0, **kw) -> Site:
    return Site(
        name=name,
        address=f"tcp://10.0.0.{len(name)}:8786",
        labels=dict(labels or {}),
        datasets={s.dataset: s for s in shards},
        gpus=[GPU(i) for i in range(gpus)],
        **kw,
    )


def catalog(*sites: Site) -> Catalog:
    return Catalog({s.name: s for s in sites})


def full_site() -> Site:
    """A site with every field set to something other than its default."""
    return Site(
        name="berlin",
        address="tcp://10.0.0.1:8786",
        state="draining",
        labels={"region": "eu", "tier": "factory"},
        datasets={
            "sensors": DatasetShard(
                "sensors", "s1", "/data/sensors/s1", "local", bytes=1024, files=3, scanned=1700000000.5
            ),
            "logs": DatasetShard("logs", "l2", "s3://bucket/logs/l2", "s3", error="AccessDenied"),
        },
        gpus=[
            GPU(0, "NVIDIA H100", memory_total=80 << 30, utilization=12.5, memory_used=1 << 30),
            GPU(1),
        ],
        gpu_state="nvml",
        versions={"python": "3.11.9", "dask": "2024.8.0"},
        nthreads=8,
        running=2,
        last_seen=1700000001.25,
    )


# --- Site ---------------------------------------------------------------------


def test_site_round_trip_keeps_everything():
    original = full_site()
    data = original.to_dict()
    back = Site.from_dict(data)
    assert back == original
    assert isinstance(back.datasets["sensors"], DatasetShard), "datasets come back as DatasetShard"
    assert all(isinstance(g, GPU) for g in back.gpus), "GPUs come back as GPU"
    assert back.gpu_count == 2


def test_site_to_dict_is_plain_json():
    data = full_site().to_dict()
    assert json.loads(json.dumps(data)) == data, "to_dict must be JSON-able as is"
    assert data["datasets"]["sensors"]["bytes"] == 1024
    assert data["gpus"][0]["model"] == "NVIDIA H100"
    assert Site.from_dict(json.loads(json.dumps(data))) == full_site()


def test_site_from_dict_defaults():
    back = Site.from_dict({"name": "x", "address": "tcp://x:1"})
    assert back == Site("x", "tcp://x:1")
    assert back.state == "running"
    assert back.datasets == {} and back.gpus == [] and back.labels == {}
    assert back.gpu_count == 0


def test_site_from_dict_ignores_unknown_keys_at_every_level():
    data = full_site().to_dict()
    data["from_the_future"] = {"x": 1}
    data["datasets"]["sensors"]["checksum"] = "abc"
    data["gpus"][0]["temperature"] = 70
    back = Site.from_dict(data)
    assert back == full_site()
    assert not hasattr(back, "from_the_future")


def test_site_to_dict_does_not_share_state():
    original = full_site()
    data = original.to_dict()
    data["labels"]["region"] = "us"
    data["datasets"]["sensors"]["bytes"] = 1
    assert original.labels["region"] == "eu", "to_dict must copy labels"
    assert original.datasets["sensors"].bytes == 1024, "to_dict must copy datasets"


def test_gpu_count():
    assert site("a").gpu_count == 0
    assert site("a", gpus=3).gpu_count == 3


# --- Catalog ------------------------------------------------------------------


def fleet() -> Catalog:
    """sensors: s1 on berlin and paris (replicas), s2 on rome; logs: l1 on paris."""
    return catalog(
        site("berlin", shard("sensors", "s1", bytes=100, files=2), labels={"region": "eu"}),
        site("paris", shard("sensors", "s1", bytes=100, files=2), shard("logs", "l1", bytes=7, files=1)),
        site("rome", shard("sensors", "s2", bytes=50, files=1), gpus=1),
        site("oslo"),
    )


def test_catalog_round_trip():
    original = catalog(full_site(), site("oslo"), site("rome", shard("sensors", "s2")))
    data = original.to_dict()
    assert json.loads(json.dumps(data)) == data, "Catalog.to_dict must be JSON-able"
    assert [s["name"] for s in data["sites"]] == ["berlin", "oslo", "rome"]
    back = Catalog.from_dict(data)
    assert back == original
    assert list(back.sites) == ["berlin", "oslo", "rome"]


def test_catalog_from_dict_ignores_unknown_keys():
    data = fleet().to_dict()
    data["version"] = 3
    data["sites"][0]["new_field"] = True
    assert Catalog.from_dict(data) == fleet()


def test_catalog_from_empty_dict():
    assert Catalog.from_dict({}) == Catalog()
    assert len(Catalog.from_dict({"sites": []})) == 0


def test_catalog_iter_and_len():
    cat = fleet()
    assert len(cat) == 4
    assert [s.name for s in cat] == ["berlin", "paris", "rome", "oslo"]
    assert len(Catalog()) == 0
    assert list(Catalog()) == []


def test_holders():
    holders = fleet().holders("sensors")
    assert {k: [s.name for s in v] for k, v in holders.items()} == {
        "s1": ["berlin", "paris"],
        "s2": ["rome"],
    }
    assert all(isinstance(s, Site) for v in holders.values() for s in v)
    assert {k: [s.name for s in v] for k, v in fleet().holders("logs").items()} == {"l1": ["paris"]}
    assert fleet().holders("nope") == {}


def test_datasets_aggregates_shards_counting_replicas_once():
    infos = fleet().datasets()
    assert list(infos) == ["logs", "sensors"], "dataset names are sorted"
    sensors = infos["sensors"]
    assert isinstance(sensors, DatasetInfo)
    assert sensors.name == "sensors"
    assert sensors.shards == {"s1": ["berlin", "paris"], "s2": ["rome"]}
    assert sensors.bytes == 150, "s1 has two replicas but counts once: 100 + 50"
    assert sensors.files == 3, "2 files in s1 (once) + 1 in s2"
    assert sensors.sites == ["berlin", "paris", "rome"]
    assert sensors.kinds == ["local"]
    assert sensors.kind == "local"
    logs = infos["logs"]
    assert (logs.bytes, logs.files, logs.sites) == (7, 1, ["paris"])


def test_datasets_empty_catalog():
    assert Catalog().datasets() == {}
    assert catalog(site("a"), site("b")).datasets() == {}


def test_datasets_bytes_none_if_any_shard_unmeasured():
    cat = catalog(
        site("a", shard("d", "s1", bytes=10, files=1)),
        site("b", shard("d", "s2")),  # not scanned yet
    )
    info = cat.datasets()["d"]
    assert info.bytes is None, "an unmeasured shard makes the total unknown, not an undercount"
    assert info.files is None


def test_datasets_a_shard_measured_on_one_replica_counts():
    cat = catalog(
        site("a", shard("d", "s1")),  # this replica has not been scanned
        site("b", shard("d", "s1", bytes=10, files=4)),
        site("c", shard("d", "s2", bytes=5, files=1)),
    )
    info = cat.datasets()["d"]
    assert info.bytes == 15
    assert info.files == 5


def test_datasets_zero_bytes_is_measured():
    info = catalog(site("a", shard("d", "s1", bytes=0, files=0))).datasets()["d"]
    assert info.bytes == 0 and info.files == 0, "0 is a measurement, not 'unknown'"


def test_dataset_kind_mixed_when_kinds_differ():
    cat = catalog(
        site("a", shard("d", "s1", kind="local")),
        site("b", shard("d", "s2", kind="s3")),
    )
    info = cat.datasets()["d"]
    assert info.kinds == ["local", "s3"]
    assert info.kind == "mixed"


def test_dataset_kind_single_even_across_replicas():
    cat = catalog(site("a", shard("d", "s1", kind="s3")), site("b", shard("d", "s1", kind="s3")))
    info = cat.datasets()["d"]
    assert info.kinds == ["s3"]
    assert info.kind == "s3"


def test_dataset_info_sites_sorted_unique():
    info = DatasetInfo("d", {"s2": ["c", "a"], "s1": ["b", "a"]}, None, None, ["local"])
    assert info.sites == ["a", "b", "c"]


@pytest.mark.parametrize("kinds, expected", [(["local"], "local"), (["s3"], "s3"), (["gcs", "s3"], "mixed")])
def test_dataset_info_kind(kinds, expected):
    assert DatasetInfo("d", {}, None, None, kinds).kind == expected


def test_datasets_shards_and_holders_sorted():
    cat = catalog(
        site("zeta", shard("d", "s2")),
        site("alpha", shard("d", "s2")),
        site("mid", shard("d", "s1")),
    )
    info = cat.datasets()["d"]
    assert list(info.shards) == ["s1", "s2"]
    assert info.shards["s2"] == ["alpha", "zeta"]
