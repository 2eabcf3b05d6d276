"""A fleet in this process: a scheduler and edge sites as Dask servers on one
event loop, through Dask's ``SpecCluster`` (which, unlike ``LocalCluster``,
lets every site have its own labels, datasets and GPUs).

Used by the embedded demo and the tests; real fleets run ``jupyter-edge
scheduler`` and ``jupyter-edge worker`` on their own machines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .site.dataset import DatasetDeclaration


@dataclass
class SiteSpec:
    """One site of a local fleet."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    gpus: int | str = 0  # a count declared by hand, or "auto" (every source, under host_root)
    gpu_vendor: str | None = None  # describe GPUs declared by hand: "nvidia", "amd", "intel"
    gpu_model: str | None = None
    gpu_memory: int | str | None = None  # bytes, or a size like "16GiB"
    host_root: str = "/"  # read the host's /sys, /proc and /etc under this folder
    wasm: bool = False  # run WebAssembly modules (wasmtime must be installed)
    datasets: list[DatasetDeclaration] = field(default_factory=list)
    nthreads: int = 1
    docker: str | bool | None = None  # run container executions through this engine (True: $DOCKER_HOST)
    policy: object = None  # a jupyter_edge.site.policy.Policy
    audit_log: str | None = None


def site_worker_spec(site: SiteSpec, storage_options: dict | None = None, security=None) -> dict:
    """The SpecCluster entry that starts ``site`` (also for adding one later)."""
    from distributed import Worker

    from .site.gpu import discover_gpus
    from .site.plugin import EdgeSitePlugin

    plugin = EdgeSitePlugin(
        labels=site.labels,
        datasets=site.datasets,
        gpus=discover_gpus(
            site.gpus or None,
            host_root=site.host_root,
            vendor=site.gpu_vendor,
            model=site.gpu_model,
            memory=site.gpu_memory,
        ),
        storage_options=storage_options,
        docker=site.docker,
        policy=site.policy,
        audit_log=site.audit_log,
        wasm=site.wasm,
    )
    options = {
        "name": site.name,
        "nthreads": site.nthreads,
        "host": "127.0.0.1",
        "dashboard": False,
        "dashboard_address": ":0",
        "resources": plugin.resources,
        "plugins": {plugin},
    }
    if security is not None:
        options.update(security=security, protocol="tls")
    return {"cls": Worker, "options": options}


def local_cluster(
    sites: list[SiteSpec],
    *,
    port: int = 0,
    scheduler_file: str | None = None,
    asynchronous: bool = False,
    storage_options: dict | None = None,
    name: str = "jupyter-edge fleet",
    scheduler_plugin: bool = True,
    security=None,
    silence_logs: int | bool = logging.WARNING,
):
    """A ``SpecCluster`` with the edge scheduler plugin (unless told not to:
    a Fleet installs it on first contact) and one worker per site.

    As with ``LocalCluster``, Dask's logs below ``silence_logs`` stay quiet while
    the fleet runs (in a notebook they would fill the cell that started it);
    ``silence_logs=False`` keeps them."""
    from distributed import Scheduler, SpecCluster

    from .scheduler import EdgeSchedulerPlugin

    workers = {site.name: site_worker_spec(site, storage_options, security) for site in sites}
    scheduler = {
        "cls": Scheduler,
        "options": {
            "host": "127.0.0.1",
            "port": port,
            "dashboard": False,
            "dashboard_address": ":0",
            "scheduler_file": scheduler_file,
            "plugins": [EdgeSchedulerPlugin()] if scheduler_plugin else [],
        },
    }
    if security is not None:  # TLS between every part: the scheduler, the sites, this process's client
        scheduler["options"].update(security=security, protocol="tls")
    return SpecCluster(
        workers=workers,
        scheduler=scheduler,
        asynchronous=asynchronous,
        name=name,
        security=security,
        silence_logs=silence_logs,
    )
