#!/usr/bin/env python
"""Many reporting sites for the server and sidebar benchmarks.

``reporting_fleet(count)`` starts a real ``jupyter-edge scheduler`` process and
one more process holding ``count`` real Dask workers, each reporting as a site
(labels, two measured datasets, two GPUs declared on one in ten), as a fleet of
separate machines would: the scheduler's event loop serves requests while it
takes the sites' heartbeats, not while it also runs them. The sites start no
runner processes (200 runners would not fit two cores); the benchmarks that
use them are about serving and drawing the catalog.

Run as a script (``reporting_sites.py ADDRESS COUNT ROOT``), it is that second
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from time import perf_counter


async def run_sites(address: str, count: int, root: str) -> None:
    from distributed import Worker

    from jupyter_edge.site.dataset import DatasetDeclaration
    from jupyter_edge.site.plugin import EdgeSitePlugin

    class ReportingSite(EdgeSitePlugin):
        """A site that reports and measures its datasets but runs no runners."""

        async def setup(self, worker) -> None:
            self.worker = worker
            await self.rescan(report=False)
            self._first_report = asyncio.ensure_future(self._report_when_connected())

        async def teardown(self, worker) -> None:
            self._first_report.cancel()

    workers = []
    for i in range(count):
        name = f"site-{i:03d}"
        folders = []
        for dataset in ("sensors", "logs"):
            folder = os.path.join(root, name, dataset)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "part-0.csv"), "w") as f:  # noqa: ASYNC230 (set-up, before any site runs)
                f.write("x\n" + "1\n" * (i + 1))
            folders.append(DatasetDeclaration(dataset, folder, name))
        plugin = ReportingSite(
            labels={"region": ("eu", "us", "ap")[i % 3], "tier": "factory"},
            datasets=folders,
            gpus=2 if i % 10 == 0 else None,
        )
        workers.append(
            Worker(
                address,
                name=name,
                nthreads=1,
                host="127.0.0.1",
                dashboard=False,
                resources=plugin.resources,
                plugins={plugin},
            )
        )
    await asyncio.gather(*workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(w.close(reason="benchmark over") for w in workers), return_exceptions=True)


@contextlib.contextmanager
def reporting_fleet(count: int):
    """Yield a :class:`~jupyter_edge.Fleet` connected to ``count`` reporting sites."""
    from jupyter_edge import Fleet

    root = tempfile.mkdtemp(prefix="jupyter-edge-bench-fleet-")
    scheduler_file = os.path.join(root, "scheduler.json")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--scheduler-file",
            scheduler_file,
        ],
        **quiet,
    )
    sites = None
    fleet = None
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(scheduler_file):
            assert scheduler.poll() is None and time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        began = perf_counter()
        fleet = Fleet.connect(scheduler_file=scheduler_file)
        sites = subprocess.Popen([sys.executable, __file__, fleet.address, str(count), root], **quiet)
        fleet.wait_for_sites(count, timeout=300)
        print(f"{count} sites reported in {perf_counter() - began:.1f}s at {fleet.address}", flush=True)
        yield fleet
    finally:
        if fleet is not None:
            fleet.close()
        for proc in (sites, scheduler):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    asyncio.run(run_sites(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
