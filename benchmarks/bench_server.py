#!/usr/bin/env python
"""How fast the server extension answers ``GET fleet`` for a catalog of 200 sites.

Starts a real scheduler (with the edge plugin) and 200 real Dask workers in
this process, each reporting as a site with labels, two datasets and, for one
in ten, two GPUs; then a real ``jupyter server`` subprocess with the extension,
pointed at the fleet, and times authenticated ``GET /jupyter-edge/api/fleet``
and ``GET datasets``. Goal: ``GET fleet`` answers within 50 ms (p50 and p90).

The sites only report: the benchmark is about serving the catalog, so they
start no runner processes (200 runners would not fit the 2-core test machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from time import perf_counter

GOAL_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reporting_fleet(count: int):
    """A real scheduler and ``count`` in-process sites that report (labels, two
    datasets, GPUs on one in ten) but start no runners: ``(cluster, fleet)``."""
    from distributed import Client, Scheduler, SpecCluster, Worker

    from jupyter_edge import Fleet
    from jupyter_edge.scheduler import EdgeSchedulerPlugin
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

    root = tempfile.mkdtemp(prefix="jupyter-edge-bench-fleet-")
    workers = {}
    for i in range(count):
        name = f"site-{i:03d}"
        folders = []
        for dataset in ("sensors", "logs"):
            folder = os.path.join(root, name, dataset)
            os.makedirs(folder)
            with open(os.path.join(folder, "part-0.csv"), "w") as f:
                f.write("x\n" + "1\n" * (i + 1))
            folders.append(DatasetDeclaration(dataset, folder, name))
        plugin = ReportingSite(labels={"region": ("eu", "us", "ap")[i % 3], "tier": "factory"},
                               datasets=folders, gpus=2 if i % 10 == 0 else None)
        workers[name] = {"cls": Worker, "options": {
            "name": name, "nthreads": 1, "host": "127.0.0.1", "dashboard": False, "dashboard_address": ":0",
            "resources": plugin.resources, "plugins": {plugin}}}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0, "dashboard": False,
                                               "dashboard_address": ":0", "plugins": [EdgeSchedulerPlugin()]}}
    began = perf_counter()
    cluster = SpecCluster(workers=workers, scheduler=scheduler, name="bench-fleet")
    fleet = Fleet(Client(cluster, set_as_default=False))
    fleet.wait_for_sites(count, timeout=300)
    print(f"{count} sites reported in {perf_counter() - began:.1f}s at {fleet.address}", flush=True)
    return cluster, fleet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args(argv)

    cluster, fleet = reporting_fleet(args.sites)
    root = tempfile.mkdtemp(prefix="jupyter-edge-bench-server-")
    server = None
    try:
        token, port = secrets.token_hex(16), free_port()
        env = {**os.environ, "JUPYTER_EDGE_SCHEDULER": fleet.address, "JUPYTER_RUNTIME_DIR": root}
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
             "--ServerApp.jpserver_extensions={'jupyter_edge': True}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def fetch(path: str) -> tuple[float, dict]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/jupyter-edge/api/{path}",
                                             headers={"Authorization": f"token {token}"})
            t0 = perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
            return (perf_counter() - t0) * 1000, json.loads(body)

        deadline = time.monotonic() + 60
        while True:
            try:
                _, model = fetch("fleet")
                break
            except OSError:
                assert server.poll() is None, "jupyter server exited"
                assert time.monotonic() < deadline, "jupyter server did not answer in 60 s"
                time.sleep(0.3)
        assert len(model["sites"]) == args.sites, f"GET fleet listed {len(model['sites'])} sites"
        results = {}
        for path in ("fleet", "datasets"):
            for _ in range(5):
                fetch(path)
            samples = sorted(fetch(path)[0] for _ in range(args.repeat))
            size = len(json.dumps(fetch(path)[1]))
            results[path] = (samples[len(samples) // 2], samples[int(len(samples) * 0.9)], size)
        print(f"\nGET /jupyter-edge/api/... against {args.sites} sites, {args.repeat} requests each (ms):")
        for path, (p50, p90, size) in results.items():
            print(f"  {path:<9} p50 {p50:7.2f}   p90 {p90:7.2f}   body {size / 1000:.0f} kB")
        met = results["fleet"][1] <= GOAL_MS
        print(f"goal (GET fleet within {GOAL_MS:g} ms at p90): {'MET' if met else 'NOT MET'}")
        return 0 if met else 1
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        fleet.close()
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
