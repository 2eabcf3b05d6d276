#!/usr/bin/env python
"""The fleet at scale: 32 to 256 sites on one host, against plain Dask and ipyparallel.

For each size N, one after the other, it starts a ``jupyter-edge scheduler`` and
N sites as ``jupyter-edge worker --count K`` processes (K sites each, on one
event loop; ``--per-process``), then measures:

* start to ready: until N sites have reported;
* idle cost, before any work (no runner exists yet; the same as after
  ``edge.runner.idle``): CPU of the scheduler, and of the sites per site, over
  ``--idle`` seconds; RSS per site (the processes' RSS over N);
* fan-out of a trivial call to every site, cold (the runners start) and then
  warm, ``--repeat`` times each, interleaved: ``Fleet.run(one, all=True)`` and
  ``%%edge --all`` of a cell ``1`` in a real IPython shell; p50 and p90;
* a cell printing 1,000 lines at every site (``%%edge --all``): wall time, and
  whether every site's lines arrived whole and in order;
* RSS per site again, now with warm runners.

Up to ``--compare-up-to`` sites (default 32) it also starts, in the same run
and at the same time, N plain ``dask worker`` processes (``--nthreads 1
--no-nanny``, Dask's defaults) on a plain ``dask scheduler``, and N ipyparallel
engines, and measures their idle CPU and RSS per worker/engine, plain Dask's
fan-out (``client.submit`` to each worker, then ``gather``) and ``%%px`` on all
engines; and one target: ``%%edge --sites`` one site against ``%%px`` on one
engine.

Goals (issue 14): an idle site at most 0.3% of a core and 80 MB; the scheduler
idles at most 5% of a core at 128 sites; ``%%edge --all`` p50 under 0.5 s and
p90 under 1 s at 128 sites; ``%%edge`` faster than ``%%px`` at every size
compared, one target included. The exit status is 1 when a goal is missed.

    pip install -e ".[bench]"
    python benchmarks/bench_scale.py                           # about 5 minutes on 2 cores
    python benchmarks/bench_scale.py --sizes 32,128 --repeat 10 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import psutil
from bench_fleet import exit_on_sigterm, plain_dask_worker, summary
from bench_magic import check_lines, check_values, descendants, reap, start_ipp

IDLE_SITE_CPU = 0.3  # % of one core, per idle site
IDLE_SITE_RSS = 80e6  # bytes per idle site (worker plus runners)
IDLE_HUB_CPU = 5.0  # % of one core, the scheduler at HUB_SIZE sites
HUB_SIZE = 128
FANOUT_P50, FANOUT_P90 = 0.5, 1.0  # s, %%edge --all at HUB_SIZE sites


def one():  # run as a script, this is __main__.one: pickled by value
    return 1


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_edge.cli", *args]


class Processes:
    """Processes started for one size, with their logs; all stopped by ``close``."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        with open(self.workdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        everything = [
            p for p in descendants() if p.pid in {q.pid for q in self.procs} or "runner_main" in " ".join(p.cmdline())
        ]
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        reap(everything)  # runners exit with their site


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args[:4]} did not write {path}")
        time.sleep(0.05)
    time.sleep(0.1)
    return json.loads(path.read_text())


def tree(pids: list[int]) -> list[psutil.Process]:
    """The processes ``pids`` and their descendants, each once."""
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out.update({q.pid: q for q in [p, *p.children(recursive=True)]})
        except psutil.Error:
            pass
    return list(out.values())


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def idle_cost(groups: dict[str, list[int]], window: float) -> dict[str, dict]:
    """CPU (% of one core) and RSS of each group of process trees, over ``window`` s."""
    before = {g: cpu_seconds(tree(pids)) for g, pids in groups.items()}
    t0 = time.monotonic()
    time.sleep(window)
    took = time.monotonic() - t0
    return {
        g: {
            "cpu_pct": (cpu_seconds(tree(pids)) - before[g]) / took * 100,
            "rss_bytes": rss(tree(pids)),
        }
        for g, pids in groups.items()
    }


def fanout(fleet, shell, repeat: int, gap: float, n: int) -> dict:
    from IPython.utils.capture import capture_output

    samples = {"run": [], "edge": []}
    for i in range(repeat):
        for mode in ("run", "edge") if i % 2 else ("edge", "run"):
            time.sleep(gap)
            t0 = perf_counter()
            if mode == "run":
                result = fleet.run(one, all=True, timeout=120)
                took = perf_counter() - t0
                if not result.ok or len(result) != n:
                    raise AssertionError(f"Fleet.run: {len(result)} of {n} values, {result.errors}")
            else:
                with capture_output() as out:
                    shell.run_cell_magic("edge", "--all --timeout 120", "1")
                took = perf_counter() - t0
                shown = sum(o.data.get("text/plain", "").endswith("]: 1") for o in out.outputs)
                if shown != n:
                    raise AssertionError(f"%%edge --all showed {shown} of {n} values: {out.stdout[-500:]}")
            samples[mode].append(took)
    return {mode: summary(xs) for mode, xs in samples.items()}


def thousand_lines(shell, names: list[str]) -> dict:
    from IPython.utils.capture import capture_output

    with capture_output() as out:
        t0 = perf_counter()
        shell.run_cell_magic("edge", "--all --timeout 240", "for i in range(1000): print(i)")
        took = perf_counter() - t0
    check = check_lines(out.stdout, names, 1000)
    return {"wall_s": took, "complete": check["complete"], "sites": len(names), "stray": check["stray_labels"]}


class Comparison:
    """N plain Dask workers on a plain scheduler and N ipyparallel engines, up at once."""

    def __init__(self, n: int, workdir: Path, procs: Processes, timeout: float):
        self.n = n
        scheduler_file = workdir / "plain-dask.json"
        dask_scheduler = procs.start(
            "plain-scheduler",
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(scheduler_file),
            ],
        )
        wait_for_file(scheduler_file, dask_scheduler, timeout)
        self.dask_pids = [dask_scheduler.pid]
        for i in range(n):
            worker = procs.start(
                f"plain-worker-{i}", plain_dask_worker("--scheduler-file", str(scheduler_file), name=f"plain-{i}")
            )
            self.dask_pids.append(worker.pid)
        from distributed import Client

        self.client = Client(scheduler_file=str(scheduler_file), timeout=timeout)
        self.client.wait_for_workers(n, timeout=timeout)
        self.addrs = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        self.cluster = start_ipp(n, str(workdir), int(timeout))
        self.cluster.start_cluster_sync()
        self.rc = self.cluster.connect_client_sync()
        self.rc.wait_for_engines(n, timeout=timeout, interactive=False)
        self.engines = sorted(self.rc.ids)[:n]
        for k, targets in (("all", self.engines), ("one", self.engines[:1])):
            view = self.rc[targets]
            view.block = True
            view.activate(f"_{k}")

    def ipp_pids(self) -> list[int]:
        return [
            p.pid
            for p in descendants()
            if "ipyparallel" in " ".join(p.cmdline()) or "ipcontroller" in " ".join(p.cmdline())
        ]

    def dask_fanout(self) -> float:
        t0 = perf_counter()
        futures = [self.client.submit(one, workers=[a], allow_other_workers=False, pure=False) for a in self.addrs]
        values = self.client.gather(futures)
        took = perf_counter() - t0
        if values != [1] * self.n:
            raise AssertionError(f"plain Dask returned {values!r}")
        return took

    def px(self, shell, which: str) -> float:
        from IPython.utils.capture import capture_output

        with capture_output() as out:
            t0 = perf_counter()
            shell.run_cell_magic(f"px_{which}", "", "1")
            took = perf_counter() - t0
        check_values("px", out, self.engines if which == "all" else self.engines[:1])
        return took

    def stop_dask(self) -> None:
        """Plain Dask's workers keep a core busy while idle (the figure measured):
        they go before the others are timed, so that their idle load does not
        slow %%edge and %%px alike."""
        if self.client is None:
            return
        self.client.close()
        self.client = None
        stopping = tree(self.dask_pids)
        for pid in self.dask_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        reap(stopping)

    def close(self) -> None:
        self.stop_dask()
        try:
            self.rc.close()
            self.cluster.stop_cluster_sync()
        except Exception as e:  # stopping must go on
            print(f"  stopping the ipyparallel cluster failed: {e!r}", file=sys.stderr)


def measure_size(n: int, args, shell, workdir: Path) -> dict:
    from IPython.utils.capture import capture_output

    row: dict = {"sites": n}
    procs = Processes(workdir)
    comparison = None
    try:
        scheduler_file = workdir / "edge.json"
        began = perf_counter()
        scheduler = procs.start(
            "scheduler", cli("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(scheduler_file))
        )
        wait_for_file(scheduler_file, scheduler, args.start_timeout)
        site_pids = []
        per = args.per_process
        for p in range(math.ceil(n / per)):
            count = min(per, n - p * per)
            proc = procs.start(
                f"sites-{p}",
                cli(
                    "worker",
                    "--scheduler-file",
                    str(scheduler_file),
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"p{p:02d}-{{n}}",
                    "--count",
                    str(count),
                    "--label",
                    f"process={p}",
                ),
            )
            site_pids.append(proc.pid)
        with capture_output():
            shell.run_line_magic("edge", f"connect --scheduler-file {scheduler_file}")
        fleet = shell.magics_manager.registry["EdgeMagics"].fleet
        sites = fleet.wait_for_sites(n, timeout=args.start_timeout)
        row["start_to_ready_s"] = perf_counter() - began
        names = sorted(s.name for s in sites)
        print(f"{n} sites ready in {row['start_to_ready_s']:.1f} s", flush=True)

        if n <= args.compare_up_to:
            comparison = Comparison(n, workdir, procs, args.start_timeout)
            print(f"  and {n} plain Dask workers and {n} ipyparallel engines", flush=True)
        time.sleep(args.settle)
        groups = {"scheduler": [scheduler.pid], "sites": site_pids}
        if comparison is not None:
            groups.update(
                {
                    "dask scheduler": comparison.dask_pids[:1],
                    "dask workers": comparison.dask_pids[1:],
                    "ipyparallel": comparison.ipp_pids(),
                }
            )
        idle = idle_cost(groups, args.idle)
        row["idle"] = {
            "scheduler_cpu_pct": idle["scheduler"]["cpu_pct"],
            "site_cpu_pct": idle["sites"]["cpu_pct"] / n,
            "site_rss_mb": idle["sites"]["rss_bytes"] / n / 1e6,
            "scheduler_rss_mb": idle["scheduler"]["rss_bytes"] / 1e6,
        }
        if comparison is not None:
            row["idle"].update(
                {
                    "dask_scheduler_cpu_pct": idle["dask scheduler"]["cpu_pct"],
                    "dask_worker_cpu_pct": idle["dask workers"]["cpu_pct"] / n,
                    "dask_worker_rss_mb": idle["dask workers"]["rss_bytes"] / n / 1e6,
                    "ipp_cpu_pct_per_engine": idle["ipyparallel"]["cpu_pct"] / n,
                    "ipp_rss_mb_per_engine": idle["ipyparallel"]["rss_bytes"] / n / 1e6,
                }
            )

        if comparison is not None:
            for _ in range(args.warmup):
                comparison.dask_fanout()
            dask_s = []
            for _ in range(args.repeat):
                time.sleep(args.gap)
                dask_s.append(comparison.dask_fanout())
            comparison.stop_dask()

        t0 = perf_counter()
        cold = fleet.run(one, all=True, timeout=300)
        row["cold_fanout_s"] = perf_counter() - t0
        if not cold.ok:
            raise AssertionError(f"the first fan-out failed: {cold.errors}")
        for _ in range(args.warmup):
            fleet.run(one, all=True, timeout=120)
            with capture_output():
                shell.run_cell_magic("edge", "--all", "1")
                shell.run_cell_magic("edge", f"--sites {names[0]}", "1")
        row["fanout"] = fanout(fleet, shell, args.repeat, args.gap, n)
        row["thousand_lines"] = thousand_lines(shell, names)
        row["warm_site_rss_mb"] = rss(tree(site_pids)) / n / 1e6

        if comparison is not None:
            px_all, edge_one, px_one = [], [], []
            for _ in range(args.warmup):
                comparison.px(shell, "all")
                comparison.px(shell, "one")
            for _ in range(args.repeat):
                time.sleep(args.gap)
                px_all.append(comparison.px(shell, "all"))
                time.sleep(args.gap)
                with capture_output():
                    t0 = perf_counter()
                    shell.run_cell_magic("edge", f"--sites {names[0]}", "1")
                    edge_one.append(perf_counter() - t0)
                time.sleep(args.gap)
                px_one.append(comparison.px(shell, "one"))
            row["compare"] = {
                "dask_fanout": summary(dask_s),
                "px_all": summary(px_all),
                "edge_one": summary(edge_one),
                "px_one": summary(px_one),
            }
        return row
    finally:
        with capture_output():
            shell.run_line_magic("edge", "disconnect")  # before its scheduler goes
        if comparison is not None:
            comparison.close()
        procs.close()


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


def report(rows: list[dict]) -> list[str]:
    missed = []
    print()
    lines = []
    for r in rows:
        i, f, t = r["idle"], r["fanout"], r["thousand_lines"]
        lines.append(
            [
                str(r["sites"]),
                f"{r['start_to_ready_s']:.1f}",
                f"{i['scheduler_cpu_pct']:.2f}",
                f"{i['site_cpu_pct']:.3f}",
                f"{i['site_rss_mb']:.1f}",
                f"{r['cold_fanout_s']:.1f}",
                f"{f['run']['p50_ms']:.0f} / {f['run']['p90_ms']:.0f}",
                f"{f['edge']['p50_ms']:.0f} / {f['edge']['p90_ms']:.0f}",
                f"{t['wall_s']:.2f} ({'whole' if t['complete'] else 'INCOMPLETE'})",
                f"{r['warm_site_rss_mb']:.1f}",
            ]
        )
        if i["site_cpu_pct"] > IDLE_SITE_CPU or i["site_rss_mb"] * 1e6 > IDLE_SITE_RSS:
            missed.append(f"idle site at {r['sites']}: {i['site_cpu_pct']:.3f}% and {i['site_rss_mb']:.1f} MB")
        if r["sites"] == HUB_SIZE and i["scheduler_cpu_pct"] > IDLE_HUB_CPU:
            missed.append(f"idle hub at {HUB_SIZE}: {i['scheduler_cpu_pct']:.2f}%")
        slow = f["edge"]["p50_ms"] > FANOUT_P50 * 1000 or f["edge"]["p90_ms"] > FANOUT_P90 * 1000
        if r["sites"] == HUB_SIZE and slow:
            missed.append(
                f"%%edge --all at {HUB_SIZE}: p50 {f['edge']['p50_ms']:.0f}, p90 {f['edge']['p90_ms']:.0f} ms"
            )
        if not t["complete"]:
            missed.append(f"1,000 lines at {r['sites']}: incomplete")
    table(
        [
            "sites",
            "ready s",
            "idle hub %core",
            "idle site %core",
            "idle site MB",
            "cold s",
            "Fleet.run p50/p90 ms",
            "%%edge --all p50/p90 ms",
            "1,000 lines s",
            "warm site MB",
        ],
        lines,
    )
    compared = [r for r in rows if "compare" in r]
    if compared:
        print()
        lines = []
        for r in compared:
            i, c, f = r["idle"], r["compare"], r["fanout"]
            lines.append(
                [
                    str(r["sites"]),
                    f"{i['dask_worker_cpu_pct']:.3f} / {i['dask_worker_rss_mb']:.1f}",
                    f"{i['ipp_cpu_pct_per_engine']:.3f} / {i['ipp_rss_mb_per_engine']:.1f}",
                    f"{i['dask_scheduler_cpu_pct']:.2f}",
                    f"{f['edge']['p50_ms']:.0f} / {c['px_all']['p50_ms']:.0f} / {c['dask_fanout']['p50_ms']:.0f}",
                    f"{c['edge_one']['p50_ms']:.1f} / {c['px_one']['p50_ms']:.1f}",
                ]
            )
            if f["edge"]["p50_ms"] >= c["px_all"]["p50_ms"]:
                missed.append(f"%%edge --all slower than %%px at {r['sites']}")
            if c["edge_one"]["p50_ms"] >= c["px_one"]["p50_ms"]:
                missed.append(f"%%edge on one site slower than %%px on one engine (fleet of {r['sites']})")
        table(
            [
                "sites",
                "idle Dask worker %core / MB",
                "idle ipyparallel engine %core / MB",
                "idle Dask hub %core",
                "all: %%edge / %%px / Dask p50 ms",
                "one: %%edge / %%px p50 ms",
            ],
            lines,
        )
    print()
    print("goals met" if not missed else "goals NOT met: " + "; ".join(missed))
    return missed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="32,64,128,256", help="fleet sizes, comma-separated")
    ap.add_argument("--per-process", type=int, default=32, help="sites per `jupyter-edge worker --count` process")
    ap.add_argument(
        "--compare-up-to",
        type=int,
        default=32,
        help="also start plain Dask workers and ipyparallel engines up to this size",
    )
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gap", type=float, default=0.1, help="seconds idle before each measured call")
    ap.add_argument("--idle", type=float, default=20, help="seconds over which idle CPU is measured")
    ap.add_argument("--settle", type=float, default=5, help="seconds after start before measuring idle")
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    exit_on_sigterm()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("ipyparallel").setLevel(logging.WARNING)
    try:
        import ipyparallel  # noqa: F401
    except ImportError:
        print("this benchmark compares with ipyparallel: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="jupyter-edge-bench-scale-"))
    os.environ["IPYTHONDIR"] = str(root / "ipython")
    os.environ.setdefault("IPP_NONINTERACTIVE", "0")
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "jupyter_edge")
    print(f"logs in {root}; {os.cpu_count()} CPUs; sizes {sizes}, {args.per_process} sites per process", flush=True)
    rows = []
    for n in sizes:
        workdir = root / f"n{n}"
        workdir.mkdir()
        rows.append(measure_size(n, args, shell, workdir))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    missed = report(rows)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
