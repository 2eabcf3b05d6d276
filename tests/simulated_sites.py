"""Many simulated sites for scale tests: ``python tests/simulated_sites.py ADDRESS COUNT``.

Each simulated site joins the scheduler the way a real site's Dask worker does,
and nothing more: it opens a connection, sends Dask's ``register-worker`` (so
the scheduler's own ``add_worker`` admits it and ``scheduler.workers`` holds
it), keeps that connection as its worker stream, sends its report on it as a
``log-event`` on ``SITE_TOPIC`` (what ``Worker.log_event`` sends), and sends
Dask's ``heartbeat_worker`` as often as the scheduler asks, with an
``edge-rtt`` metric as a real site's heartbeat carries. It runs no tasks: the
scale tests read the catalog, they do not run work.

A thousand real workers (threads, runners, periodic callbacks) would not fit
on a two-core machine next to the scheduler, JupyterLab and Chromium; these
cost the scheduler what a site costs it (a connection, a report, heartbeats).

Prints ``ready COUNT`` once every site has registered and reported, then runs
until terminated.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import sys
import time

REGIONS = ["eu", "us", "ap", "sa", "af", "me", "oc", "ca"]
TIERS = ["factory", "store", "hospital"]


def site_name(i: int) -> str:
    return f"site-{i:04d}"


def site_address(i: int) -> str:
    """A made-up address per site (a host each, as in a real fleet). Nothing ever
    dials a site (see jupyter_edge/protocol.py), so nothing listens there."""
    return f"tcp://127.1.{i // 250}.{i % 250 + 1}:8790"


def site_report(i: int) -> dict:
    """What site ``i`` reports: labels, its own ``sensors`` shard, its region's
    ``weather`` shard (replicated across the region), GPUs at every 50th site,
    containers at every 100th."""
    from jupyter_edge.catalog import GPU, DatasetShard, Site
    from jupyter_edge.versions import versions

    name, region = site_name(i), REGIONS[i % len(REGIONS)]
    labels = {"region": region, "tier": TIERS[i % len(TIERS)]}
    datasets = {
        "sensors": DatasetShard("sensors", name, f"/data/{name}/sensors", "local", 50_000 + i, 3, time.time()),
        "weather": DatasetShard("weather", region, f"/data/weather-{region}", "local", 2_000_000, 12, time.time()),
    }
    gpus = [GPU(0, "declared")] if i % 50 == 0 else []
    containers = {"engine": "docker", "version": "20.10", "images": ["edge-python:3.11"]} if i % 100 == 0 else None
    labels["edge.executor"] = "python,docker" if containers else "python"
    site = Site(
        name=name,
        address=site_address(i),
        labels=labels,
        datasets=datasets,
        gpus=gpus,
        gpu_state="declared" if gpus else "none",
        versions=versions(),
        containers=containers,
    )
    return site.to_dict()


def metrics(rtt: float) -> dict:
    """The metrics Dask's scheduler reads from a heartbeat, and the site's round trip."""
    return {
        "task_counts": {},
        "bandwidth": {"total": 100e6, "workers": {}, "types": {}},
        "digests_total_since_heartbeat": {},
        "managed_bytes": 0,
        "spilled_bytes": {"memory": 0, "disk": 0},
        "transfer": {
            "incoming_bytes": 0,
            "incoming_count": 0,
            "incoming_count_total": 0,
            "outgoing_bytes": 0,
            "outgoing_count": 0,
            "outgoing_count_total": 0,
        },
        "event_loop_interval": 0.02,
        "cpu": 1.0,
        "memory": 100e6,
        "time": time.time(),
        "host_net_io": {"read_bps": 0.0, "write_bps": 0.0},
        "host_disk_io": {"read_bps": 0.0, "write_bps": 0.0},
        "num_fds": 20,
        "edge-rtt": rtt,
    }


class SimulatedSite:
    def __init__(self, scheduler: str, i: int):
        self.scheduler, self.i = scheduler, i
        self.address, self.name = site_address(i), site_name(i)
        self.rtt = 0.002 + random.random() * 0.05
        self.interval = 1.0
        self.stream = None

    async def join(self) -> None:
        from distributed.batched import BatchedSend
        from distributed.comm import connect
        from distributed.versions import get_versions

        from jupyter_edge import protocol

        comm = await connect(self.scheduler)
        await comm.write(
            {
                "op": "register-worker",
                "reply": False,
                "address": self.address,
                "status": "running",
                "nthreads": 1,
                "name": self.name,
                "now": time.time(),
                "resources": {"GPU": 1.0} if self.i % 50 == 0 else {},
                "memory_limit": 2**30,
                "local_directory": "/tmp",
                "services": {},
                "nanny": None,
                "pid": os.getpid(),
                "versions": get_versions(),
                "metrics": metrics(self.rtt),
                "extra": {},
                "stimulus_id": f"worker-connect-{time.time()}",
                "server_id": f"simulated-{self.name}",
            },
            serializers=["msgpack"],
        )
        answer = await comm.read(deserializers=["msgpack"])
        if answer.get("status") != "OK":
            raise RuntimeError(f"{self.name} was refused: {answer}")
        self.interval = answer["heartbeat-interval"]
        self.stream = BatchedSend(interval="5ms")
        self.stream.start(comm)
        self.stream.send(
            {"op": "log-event", "topic": protocol.SITE_TOPIC, "msg": protocol.site_report(site_report(self.i))}
        )

    async def heartbeat(self, pool) -> None:
        """Heartbeats as a Dask worker sends them, first at a random point of the interval."""
        await asyncio.sleep(random.random() * self.interval)
        while True:
            answer = await pool(self.scheduler).heartbeat_worker(
                address=self.address, now=time.time(), metrics=metrics(self.rtt), executing={}, extensions={}
            )
            if answer.get("status") != "OK":
                return
            self.interval = answer.get("heartbeat-interval", self.interval)
            await asyncio.sleep(self.interval)


async def run(scheduler: str, count: int) -> None:
    from distributed.core import ConnectionPool

    sites = [SimulatedSite(scheduler, i) for i in range(count)]
    for start in range(0, count, 50):  # 50 joining at a time, as sites starting together would
        await asyncio.gather(*(site.join() for site in sites[start : start + 50]))
    pool = await ConnectionPool(limit=16)
    beats = [asyncio.ensure_future(site.heartbeat(pool)) for site in sites]
    print(f"ready {count}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for beat in beats:
        beat.cancel()
    for site in sites:
        await site.stream.close()
    await pool.close()


def raise_fd_limit() -> None:
    """Room for a thousand connections where the soft limit is 1024 (as ``dask
    scheduler`` makes for itself)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


if __name__ == "__main__":
    raise_fd_limit()
    asyncio.run(run(sys.argv[1], int(sys.argv[2])))
