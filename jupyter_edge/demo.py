"""The demo fleet: four or more sites on loopback, with sample data.

berlin (region=eu, factory), paris (eu, store), boston (us, hospital, one NVIDIA T4
declared by hand) and tokyo (ap, factory), then ``site-5``, ...; each runs
WebAssembly modules when wasmtime is installed (the ``demo`` extra). Each holds its own shard
of ``sensors`` (Parquet) and ``logs`` (text); ``weather`` has shards ``eu``
(replicated on berlin and paris), ``us`` and ``ap``; with moto installed (the
``demo`` extra), boston and tokyo hold ``archive`` in a local S3 endpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from .local import SiteSpec, local_cluster
from .site.dataset import DatasetDeclaration

logger = logging.getLogger(__name__)

_REGIONS = ("eu", "eu", "us", "ap")
_TIERS = ("factory", "store", "hospital", "factory")
_NAMES = ("berlin", "paris", "boston", "tokyo")
_WEATHER_SHARD = {"eu": "eu", "us": "us", "ap": "ap"}
ARCHIVE_BUCKET = "edge-archive"
#: Demo-only credentials of the local S3 endpoint; they stay with the sites.
_S3_KEY, _S3_SECRET = "edge-demo-key", "edge-demo-secret"


def plan_sites(count: int) -> list[SiteSpec]:
    if count < 1:
        raise ValueError("a demo fleet needs at least one site")
    from .site.wasm import wasmtime_missing

    wasm = wasmtime_missing() is None  # every site runs WebAssembly modules where wasmtime is installed
    sites = []
    for i in range(count):
        name = _NAMES[i] if i < len(_NAMES) else f"site-{i + 1}"
        region = _REGIONS[i % len(_REGIONS)]
        labels = {"region": region, "tier": _TIERS[i % len(_TIERS)]}
        # boston's GPU is declared by hand, as its owner describes it: the machine may have none.
        gpu = {"gpus": 1, "gpu_vendor": "nvidia", "gpu_model": "NVIDIA T4", "gpu_memory": "16GiB"}
        sites.append(SiteSpec(name, labels, wasm=wasm, **(gpu if name == "boston" else {})))
    return sites


def wasm_module(name: str) -> Path:
    """A WebAssembly module the demo ships, built from its C source beside it
    (``scan``: ``jupyter_edge/demo_wasm/scan.c``; 06-wasm.ipynb sends it)."""
    path = Path(__file__).with_name("demo_wasm") / f"{name}.wasm"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.wasm"))
        raise ValueError(f"the demo has no module {name!r}; it has {', '.join(known)}")
    return path


def make_sample_data(root: str, sites: list[SiteSpec], rows: int = 2000) -> None:
    """Write each site's folders under ``root`` (kept if already there) and
    attach the declarations to ``sites``."""
    import numpy as np
    import pandas as pd

    for index, site in enumerate(sites):
        rng = np.random.default_rng(index)
        base = os.path.join(root, site.name)
        sensors = os.path.join(base, "sensors")
        logs = os.path.join(base, "logs")
        region = site.labels["region"]
        weather = os.path.join(root, "weather", region)
        for folder in (sensors, logs, weather):
            os.makedirs(folder, exist_ok=True)
        for part in range(2):
            path = os.path.join(sensors, f"part-{part}.parquet")
            if not os.path.exists(path):
                devices = [f"{site.name}-dev{d}" for d in range(5)]
                pd.DataFrame(
                    {
                        "device": rng.choice(devices, rows),
                        "time": pd.date_range("2026-11-01", periods=rows, freq="min") + pd.Timedelta(hours=part * 48),
                        "value": rng.normal(20 + index, 2, rows).round(3),
                        "temperature": rng.normal(35 + 3 * index, 4, rows).round(2),
                    }
                ).to_parquet(path, index=False)
        for day in range(3):
            path = os.path.join(logs, f"2026-11-0{day + 1}.log")
            if not os.path.exists(path):
                with open(path, "w") as f:
                    for minute in range(600):
                        burst = (minute // 60) == (index + day) % 10
                        level = (
                            "ERROR" if burst and rng.random() < 0.6 else rng.choice(["INFO", "INFO", "INFO", "WARN"])
                        )
                        f.write(
                            f"2026-11-0{day + 1}T{minute // 60:02d}:{minute % 60:02d}:00 {level} "
                            f"{site.name} line={rng.integers(1, 9)} msg=reading ok\n"
                        )
        path = os.path.join(weather, "readings.csv")
        if not os.path.exists(path):
            pd.DataFrame({"day": range(30), "rain_mm": rng.gamma(2, 2, 30).round(1)}).to_csv(path, index=False)
        site.datasets = [
            DatasetDeclaration("sensors", sensors, site.name),
            DatasetDeclaration("logs", logs, site.name),
            DatasetDeclaration("weather", weather, _WEATHER_SHARD.get(region, region)),
        ]


class DemoS3:
    """moto's S3 server on 127.0.0.1 with the ``archive`` dataset in it."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        # The server logs every request through werkzeug's logger: a line per S3
        # call, in the demo's terminal or the notebook cell that started it.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.storage_options = {"s3": {"key": _S3_KEY, "secret": _S3_SECRET, "endpoint_url": self.endpoint}}

    def fill(self, sites: list[SiteSpec]) -> None:
        import pandas as pd
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options["s3"])
        if not fs.exists(ARCHIVE_BUCKET):
            fs.mkdir(ARCHIVE_BUCKET)
        for site in sites:
            if site.name not in ("boston", "tokyo"):
                continue
            prefix = f"{ARCHIVE_BUCKET}/{site.name}"
            for year in (2024, 2025):
                frame = pd.DataFrame({"month": range(1, 13), "units": [year % 100 + m for m in range(12)]})
                with fs.open(f"{prefix}/{year}.csv", "w") as f:
                    frame.to_csv(f, index=False)
            site.datasets.append(DatasetDeclaration("archive", f"s3://{prefix}", site.name))

    def stop(self) -> None:
        self.server.stop()


def demo_cluster(
    sites: int = 4,
    data_dir: str | None = None,
    port: int = 0,
    s3: bool | None = None,
    scheduler_file: str | None = None,
    asynchronous: bool = False,
    security=None,
):
    """A SpecCluster of demo sites with sample data, all in this process.

    ``s3=None`` adds the S3 dataset when moto is installed; ``security`` (a
    ``distributed.Security``) runs it all over TLS.
    """
    planned = plan_sites(sites)
    data_dir = data_dir or default_data_dir()
    make_sample_data(data_dir, planned)
    s3_server = None
    if s3 is None:
        try:
            import moto.server  # noqa: F401

            s3 = True
        except ImportError:
            logger.info("moto is not installed: the demo runs without its S3 dataset")
            s3 = False
    if s3:
        s3_server = DemoS3()
        s3_server.fill(planned)
    cluster = local_cluster(
        planned,
        port=port,
        scheduler_file=scheduler_file,
        asynchronous=asynchronous,
        storage_options=s3_server.storage_options if s3_server else None,
        name="jupyter-edge demo",
        security=security,
    )
    cluster.edge_s3 = s3_server
    cluster.edge_data_dir = data_dir
    return cluster


def default_data_dir() -> str:
    """Where the demo's sample data (and its TLS certificates) go unless told."""
    return os.path.join(tempfile.gettempdir(), "jupyter-edge-demo")


def demo_certificates(data_dir: str, sites: int) -> dict:
    """Certificates for a TLS demo under ``data_dir/tls`` (made once, then reused):
    the scheduler, each site, and a client called ``notebook``."""
    from . import certs

    root = os.path.join(data_dir, "tls")
    names = [s.name for s in plan_sites(sites)]
    if not os.path.exists(os.path.join(root, "client-notebook", "key.pem")):
        certs.create(root, sites=names, clients=["notebook"])
    return {"root": root, "scheduler": os.path.join(root, "scheduler"), "client": os.path.join(root, "client-notebook")}


def close_demo(cluster) -> None:
    cluster.close()
    if getattr(cluster, "edge_s3", None) is not None:
        cluster.edge_s3.stop()


def start_demo(sites: int = 4, data_dir: str | None = None, s3: bool | None = None):
    """The embedded demo fleet, connected: a :class:`~jupyter_edge.fleet.Fleet`."""
    from distributed import Client

    from .fleet import Fleet

    cluster = demo_cluster(sites=sites, data_dir=data_dir, s3=s3)
    client = Client(cluster, set_as_default=False)
    fleet = Fleet(client, cluster=_DemoHandle(cluster))
    fleet.wait_for_sites(len(cluster.worker_spec))
    return fleet


class _DemoHandle:
    """What a Fleet closes for an embedded demo: the cluster and its S3 server."""

    def __init__(self, cluster):
        self.cluster = cluster

    def close(self) -> None:
        close_demo(self.cluster)
