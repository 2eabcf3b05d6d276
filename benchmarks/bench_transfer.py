"""Large values from a site nobody can dial, against Dask's own gather, in one run.

One CLI scheduler; one jupyter-edge site (in a network namespace whose firewall
drops every connection in, when this runs as root; else on loopback, and the
value path is the same: the site's own stream); and one plain ``dask worker``
the scheduler can reach. For each size, a value made at the site comes back
through ``Fleet.run`` (chunks relayed over the site's connection) and, in the
same round, through ``client.submit(...).result()`` from the plain worker
(Dask's gather: the scheduler dials the worker and passes the value on, whole).
The scheduler's resident memory is
sampled every 5 ms during each transfer: its growth over the value's size says
whether it held the value or only a window of chunks.

    python benchmarks/bench_transfer.py [--sizes 1,16,100] [--repeat 7] [--json out.json] [--plain-in-namespace]

Goals (issue 12): throughput at least 0.8x Dask's; scheduler memory growth below
4 chunks (``edge.transfer.chunk``) per transfer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from dask.utils import parse_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fleet import plain_dask_worker

MIB = 2**20


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_edge.cli", *args]


class PeakMemory:
    """The largest RSS of a process while the block runs, sampled every 5 ms."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)

    def __enter__(self):
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        self.cpu = usage.ru_utime + usage.ru_stime  # the sampling's own, not the transfer's

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def cpu_seconds(others: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds (user + system) spent so far by this process (the notebook's
    side, ``client``; in microseconds) and by each other role's processes (in the
    kernel's 10 ms ticks, so they are summed over many rounds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"client": usage.ru_utime + usage.ru_stime}
    for role, processes in others.items():
        out[role] = 0.0
        for p in processes:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:  # a runner replaced since
                continue
            out[role] += times.user + times.system
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,100", help="MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--plain-in-namespace",
        action="store_true",
        help="put the plain Dask worker in a namespace of its own too (no firewall: the scheduler can dial it), "
        "so that both values cross the same kind of link (as root)",
    )
    args = parser.parse_args()
    sizes = [int(s) * MIB for s in args.sizes.split(",")]

    from distributed import Client
    from processes import stop_all

    from jupyter_edge import Fleet, config

    root = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    env = {**os.environ, "DASK_EDGE__RESULT_LIMIT": f"{max(sizes) + MIB}"}
    procs: list[subprocess.Popen] = []
    host = plain_host = None

    def start(command: list[str], name: str) -> subprocess.Popen:
        with open(root / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        return procs[-1]

    try:
        scheduler_file = root / "scheduler.json"
        scheduler = start(
            cli("scheduler", "--host", "0.0.0.0", "--port", "0", "--scheduler-file", str(scheduler_file)), "scheduler"
        )
        while not scheduler_file.exists():
            time.sleep(0.05)
        port = json.loads(scheduler_file.read_text())["address"].rsplit(":", 1)[1]
        where = "loopback"
        if os.geteuid() == 0:
            from netns import Host

            host = Host(40)
            host.firewall()
            site = start(
                host.command(cli("worker", f"tcp://{host.gateway}:{port}", "--name", "site", "--host", host.address)),
                "site",
            )
            where = "a firewalled namespace"
        else:
            site = start(cli("worker", f"tcp://127.0.0.1:{port}", "--name", "site", "--host", "127.0.0.1"), "site")
        if args.plain_in_namespace and os.geteuid() == 0:
            from netns import Host

            plain_host = Host(41)
            plain_worker = start(
                plain_host.command(
                    plain_dask_worker(f"tcp://{plain_host.gateway}:{port}", name="plain", host=plain_host.address)
                ),
                "plain",
            )
            where += "; the plain worker in a namespace of its own, not firewalled"
        else:
            plain_worker = start(plain_dask_worker(f"tcp://127.0.0.1:{port}", name="plain"), "plain")
        fleet = Fleet.connect(f"tcp://127.0.0.1:{port}")
        fleet.wait_for_sites(1, timeout=60)
        client: Client = fleet.client
        client.wait_for_workers(2, timeout=60)
        plain = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "plain")
        chunk = parse_bytes(str(config.get("transfer.chunk")))
        print(f"site in {where}; chunk {chunk // MIB} MiB, window {config.get('transfer.window')}")

        # On this machine every process of both paths shares the same cores: CPU per
        # transfer, by role, says where the time goes (summed over the rounds: the
        # kernel counts in 10 ms ticks).
        pids = {"scheduler": scheduler.pid, "site": site.pid, "worker": plain_worker.pid}
        rows = []
        for size in sizes:
            edge_s, dask_s, edge_mem, dask_mem = [], [], [], []
            cpu = {which: dict.fromkeys(["client", *pids], 0.0) for which in ("edge", "dask")}
            roles = {}  # each role's processes, with a site's runners (started by the warm-up round)
            for i in range(args.repeat + 1):  # the first round warms up
                order = ["edge", "dask"] if i % 2 else ["dask", "edge"]
                for which in order:
                    with PeakMemory(scheduler.pid) as memory:
                        before = cpu_seconds(roles)
                        t0 = time.perf_counter()
                        if which == "edge":
                            res = fleet.run(lambda n=size: b"v" * n, sites=["site"], timeout=300)
                            assert len(res["site"]) == size, res.errors
                        else:
                            future = client.submit(lambda n=size: b"v" * n, workers=[plain], pure=False)
                            assert len(future.result()) == size
                            del future
                        took = time.perf_counter() - t0
                        after = cpu_seconds(roles)
                    if i:
                        (edge_s if which == "edge" else dask_s).append(took)
                        (edge_mem if which == "edge" else dask_mem).append(memory.growth)
                        for role in cpu[which]:
                            cpu[which][role] += after[role] - before[role]
                        cpu[which]["client"] -= memory.cpu
                roles = {role: [p := psutil.Process(pid), *p.children(recursive=True)] for role, pid in pids.items()}
            row = {
                "MiB": size // MIB,
                "edge MB/s": size / statistics.median(edge_s) / 1e6,
                "dask MB/s": size / statistics.median(dask_s) / 1e6,
                "edge scheduler growth, chunks": max(edge_mem) / chunk,
                "dask scheduler growth, chunks": max(dask_mem) / chunk,
            }
            row["ratio"] = row["edge MB/s"] / row["dask MB/s"]
            for which in ("edge", "dask"):
                row[f"{which} CPU ms"] = {role: 1000 * s / args.repeat for role, s in cpu[which].items()}
            rows.append(row)
            print(
                f"{row['MiB']:>5} MiB  edge {row['edge MB/s']:8.1f} MB/s  dask {row['dask MB/s']:8.1f} MB/s  "
                f"ratio {row['ratio']:.2f}  scheduler growth: edge {row['edge scheduler growth, chunks']:.1f} "
                f"chunks, dask {row['dask scheduler growth, chunks']:.1f}"
            )
            for which in ("edge", "dask"):
                spent = row[f"{which} CPU ms"]
                print(
                    f"         {which} CPU per transfer, ms: "
                    + ", ".join(f"{role} {ms:.1f}" for role, ms in spent.items())
                    + f"; all {sum(spent.values()):.1f}"
                )
        fleet.close()
        if args.json:
            Path(args.json).write_text(json.dumps({"where": where, "rows": rows}, indent=2))
        met = all(r["ratio"] >= 0.8 and r["edge scheduler growth, chunks"] < 4 for r in rows)
        print("goals met" if met else "goals NOT met")
        return 0 if met else 1
    finally:
        stop_all(procs)
        for namespace in (host, plain_host):
            if namespace is not None:
                namespace.close()


if __name__ == "__main__":
    sys.exit(main())
