#!/usr/bin/env python
"""``%%edge`` in a real IPython shell against plain Dask and ipyparallel's ``%%px``.

Starts, once, a fleet of 16 sites (``jupyter-edge worker`` processes with one
thread and one runner each, plus a ``jupyter-edge scheduler`` process: the same
fleet as ``bench_fleet.py``) and an ipyparallel cluster of 16 engines, then
measures, at 1, 4, 8 and 16 sites/engines, interleaved repetition by
repetition (the order of the sizes and of the three modes rotates):

* ``%%edge --sites site-01,...`` of a cell ``1``, driven through an IPython shell
  with ``shell.run_cell_magic("edge", line, "1")`` inside ``capture_output()``;
* plain Dask on the same workers: ``client.submit(one, workers=[addr],
  allow_other_workers=False, pure=False)`` per site, then ``.result()`` (one
  site) or ``client.gather``, with the client of the magic's own Fleet;
* ipyparallel: ``%%px`` of a cell ``1`` on the first N engines (a blocking
  DirectView ``rc[:N]`` activated as ``%%px_N``), through the same shell.

It prints p50/p90 round trips in ms and the ratios %%edge/Dask and %%edge/px.
The goals: ``%%edge`` p50 < ``%%px`` p50 and ``%%edge`` p50 <= 1.5 x plain Dask
p50, at every size. Then:

* output throughput: a cell printing 1,000 lines at each of 4 sites/engines,
  ``%%edge`` against ``%%px``; wall time p50, and whether every site's lines
  arrived whole and in order (parsed from the labelled captured stdout);
* where ``%%edge``'s time goes: the same cells again with the magic's steps
  timed (wrappers installed by this script around jupyter_edge functions; the
  package itself is not changed), at the smallest and the largest size;
* with ``--profile N`` (or by itself when a goal is missed), cProfile of N
  ``%%edge`` cells at the largest size, in the shell's thread and in the Dask
  client's event-loop thread.

Usage::

    python benchmarks/bench_magic.py                       # about a minute on 2 cores
    python benchmarks/bench_magic.py --sizes 1,4 --repeat 10 --json out.json

Every process it starts is stopped on the way out (try/finally; SIGTERM too).
Ports: the Dask scheduler and workers use port 0; the ipyparallel controller
picks free ports itself (its default, on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import logging
import os
import platform
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from time import perf_counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fleet import ProcessFleet, exit_on_sigterm, pct, summary

GOAL_VS_DASK = 1.5  # %%edge p50 / plain Dask p50, at every size
# and %%edge p50 < %%px p50 at every size

MODES = ("edge", "dask", "px")
LABEL = {"edge": "%%edge", "dask": "plain Dask", "px": "%%px"}


def one():  # run as a script, this is __main__.one: Dask pickles it by value
    return 1


# --- one call each ------------------------------------------------------------------


class Bench:
    def __init__(self, shell, client, names, addrs, engines):
        self.shell, self.client = shell, client
        self.names, self.addrs, self.engines = names, addrs, engines

    def edge(self, k: int, cell: str = "1"):
        from IPython.utils.capture import capture_output

        line = "--sites " + ",".join(self.names[:k])
        with capture_output() as out:
            t0 = perf_counter()
            self.shell.run_cell_magic("edge", line, cell)
            dt = perf_counter() - t0
        return dt, out

    def px(self, k: int, cell: str = "1"):
        from IPython.utils.capture import capture_output

        with capture_output() as out:
            t0 = perf_counter()
            self.shell.run_cell_magic(f"px_{k}", "", cell)
            dt = perf_counter() - t0
        return dt, out

    def dask(self, k: int):
        addrs = self.addrs[:k]
        t0 = perf_counter()
        futures = [self.client.submit(one, workers=[a], allow_other_workers=False, pure=False) for a in addrs]
        values = [futures[0].result()] if len(futures) == 1 else self.client.gather(futures)
        dt = perf_counter() - t0
        if values != [1] * k:
            raise AssertionError(f"plain Dask returned {values!r}")
        return dt

    def one_call(self, mode: str, k: int) -> float:
        if mode == "dask":
            return self.dask(k)
        dt, out = self.edge(k) if mode == "edge" else self.px(k)
        check_values(mode, out, self.names[:k] if mode == "edge" else self.engines[:k])
        return dt


def check_values(mode: str, out, targets) -> None:
    """Every site/engine showed ``1`` (``Out[site-01]: 1``, ``Out[0:12]: 1``)."""
    shown = [o.data.get("text/plain", "") for o in out.outputs]
    if mode == "edge":
        want = sorted(f"Out[{t}]: 1" for t in targets)
        got = sorted(shown)
    else:
        want = sorted(str(t) for t in targets)
        got = sorted(m.group(1) for s in shown if (m := re.match(r"Out\[(\d+):\d+\]: 1$", s)))
    if got != want:
        raise AssertionError(
            f"{LABEL[mode]} showed {shown!r} (stdout {out.stdout[-500:]!r}), "
            f"expected a value of 1 from each of {list(targets)}"
        )


# --- output throughput ----------------------------------------------------------------


def parse_streams(text: str) -> dict[str, list[str]]:
    """stdout lines by site/engine, from labelled output of either magic.

    ``%%edge`` labels every line (``[stdout:site-01] 12``); ``%%px`` prints the
    label on a line of its own when the engine changes, then the text.
    """
    by_target: dict[str, list[str]] = defaultdict(list)
    current = None
    label = re.compile(r"^\[stdout:([^\]]+)\] ?(.*)$")
    for line in text.splitlines():
        m = label.match(line)
        if m:
            current = m.group(1)
            if m.group(2):  # %%edge: the line's text follows its label
                by_target[current].append(m.group(2))
            continue
        if current is not None and not line.startswith(("edge job ", "Out[")):
            by_target[current].append(line)
    return by_target


def check_lines(out_text: str, targets, lines: int) -> dict:
    """Whether each target's lines are exactly 0..lines-1, in order."""
    found = parse_streams(out_text)
    want = [str(i) for i in range(lines)]
    per = {}
    for t in targets:
        got = found.get(str(t), [])
        per[str(t)] = {
            "lines": len(got),
            "whole_and_in_order": got == want,
            "numbers_present": len(set(got) & set(want)),
        }
    return {
        "complete": all(v["whole_and_in_order"] for v in per.values()),
        "per_target": per,
        "stray_labels": sorted(set(found) - {str(t) for t in targets}),
    }


def measure_output(bench: Bench, k: int, lines: int, repeat: int) -> dict:
    cell = f"for i in range({lines}): print(i)"
    res = {}
    for mode in ("edge", "px"):
        targets = bench.names[:k] if mode == "edge" else bench.engines[:k]
        run = bench.edge if mode == "edge" else bench.px
        run(k, cell)  # warm-up
        times, checks = [], []
        for _ in range(repeat):
            time.sleep(0.05)
            dt, out = run(k, cell)
            times.append(dt)
            checks.append(check_lines(out.stdout, targets, lines))
        res[mode] = {
            "wall": summary(times),
            "samples_ms": [x * 1000 for x in times],
            "complete_runs": sum(c["complete"] for c in checks),
            "runs": repeat,
            "first_incomplete": next((c for c in checks if not c["complete"]), None),
        }
    return res


# --- where %%edge's time goes -------------------------------------------------------------


class StepTimer:
    """Wraps jupyter_edge functions (in this process only) to time the steps of
    a %%edge cell: wall time spent in each, summed per cell."""

    STEPS = (
        # (label, module path, attribute path)
        ("parse_options", "jupyter_edge.magics.edge", "parse_options"),
        ("names_to_send", "jupyter_edge.magics.edge", "names_to_send"),
        ("LiveOutput()", "jupyter_edge.magics.live", "LiveOutput.__init__"),
        ("Fleet.run_cell (all)", "jupyter_edge.fleet", "Fleet.run_cell"),
        ("  _cell_work (compile, pack)", "jupyter_edge.fleet", "Fleet._cell_work"),
        ("  Fleet._place", "jupyter_edge.fleet", "Fleet._place"),
        ("  Job.start (submit)", "jupyter_edge.job", "Job.start"),
        ("  Progress() (text line)", "jupyter_edge.magics.progress", "Progress.__init__"),
        ("  Job._follow (wait)", "jupyter_edge.job", "Job._follow"),
        ("  Job._collect (gather)", "jupyter_edge.job", "Job._collect"),
        ("Progress.close", "jupyter_edge.magics.progress", "Progress.close"),
        ("LiveOutput.finish", "jupyter_edge.magics.live", "LiveOutput.finish"),
        ("show.replay (display values)", "jupyter_edge.magics.display", "replay"),
        ("show.closing_line", "jupyter_edge.magics.display", "closing_line"),
        ("Fleet.catalog", "jupyter_edge.fleet", "Fleet.catalog"),
    )

    def __init__(self):
        self.acc: dict[str, float] = defaultdict(float)
        self.saved = []

    def install(self):
        import importlib

        for label, modname, attr in self.STEPS:
            mod = importlib.import_module(modname)
            owner, name = mod, attr
            if "." in attr:
                cls, name = attr.split(".")
                owner = getattr(mod, cls)
            orig = getattr(owner, name)
            self.saved.append((owner, name, orig))
            setattr(owner, name, self._wrap(label, orig))
        return self

    def _wrap(self, label, fn):
        acc = self.acc

        @functools.wraps(fn)
        def timed(*a, **kw):
            t0 = perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc[label] += perf_counter() - t0

        return timed

    def uninstall(self):
        for owner, name, orig in reversed(self.saved):
            setattr(owner, name, orig)
        self.saved.clear()

    def take(self) -> dict[str, float]:
        out = dict(self.acc)
        self.acc.clear()
        return out


def measure_breakdown(bench: Bench, sizes: list[int], n: int, gap: float) -> dict:
    timer = StepTimer().install()
    try:
        result = {}
        for k in sizes:
            per_step: dict[str, list[float]] = defaultdict(list)
            totals, dask_times, run_times = [], [], []
            bench.edge(k)
            timer.take()
            for _ in range(n):
                time.sleep(gap)
                dask_times.append(bench.dask(k))
                time.sleep(gap)
                dt, out = bench.edge(k)
                check_values("edge", out, bench.names[:k])
                steps = timer.take()
                totals.append(dt)
                for label, _, _ in StepTimer.STEPS:
                    per_step[label].append(steps.get(label, 0.0))
                time.sleep(gap)
                fleet = bench.shell.magics_manager.registry["EdgeMagics"].fleet
                t0 = perf_counter()
                res = fleet.run(one, sites=bench.names[:k])
                run_times.append(perf_counter() - t0)
                assert res.ok and len(res) == k
                timer.take()
            result[k] = {
                "%%edge total": summary(totals),
                "steps": {label: summary(v) for label, v in per_step.items()},
                "plain Dask": summary(dask_times),
                "Fleet.run(one) (no magic)": summary(run_times),
            }
        return result
    finally:
        timer.uninstall()


def profile_edge(bench: Bench, k: int, n: int, gap: float, top: int = 20) -> dict:
    """cProfile of ``n`` %%edge cells: the shell's thread and the Dask client's
    event-loop thread (where replies, live output and futures' states land)."""
    client = bench.client
    main_prof, loop_prof = cProfile.Profile(), cProfile.Profile()
    client.sync(_enable_async, loop_prof)
    try:
        for _ in range(n):
            time.sleep(gap)
            main_prof.enable()
            try:
                bench.edge(k)
            finally:
                main_prof.disable()
    finally:
        client.sync(_disable_async, loop_prof)
    out = {}
    for name, prof in (("shell thread", main_prof), ("client event-loop thread", loop_prof)):
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("cumulative").print_stats(top)
        text.write("\n-- by own time --\n")
        stats.sort_stats("tottime").print_stats(10)
        out[name] = text.getvalue()
    return out


async def _enable_async(prof):
    prof.enable()


async def _disable_async(prof):
    prof.disable()


# --- CPU by process ------------------------------------------------------------------------


ROLES = ("client (this process)", "Dask scheduler", "Dask workers", "edge runners", "ipp controller", "ipp engines")


def process_roles(fleet_procs) -> dict[int, str]:
    """pid -> role, for this process and everything it started."""
    import psutil

    pids = fleet_procs.pids()
    roles = {os.getpid(): ROLES[0], pids["scheduler"]: ROLES[1]}
    workers = {p for name, p in pids.items() if name != "scheduler"}
    for p in workers:
        roles[p] = ROLES[2]
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            parent = child.ppid()
        except psutil.Error:
            continue
        if child.pid in roles:
            continue
        if parent in workers:
            roles[child.pid] = ROLES[3]
        elif "ipyparallel.engine" in cmd:
            roles[child.pid] = ROLES[5]
        elif "ipyparallel" in cmd or "ipcontroller" in cmd:
            roles[child.pid] = ROLES[4]
    # the controller's own children (its schedulers)
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in roles and roles.get(child.ppid()) == ROLES[4]:
                roles[child.pid] = ROLES[4]
        except psutil.Error:
            pass
    return roles


def cpu_by_role(roles: dict[int, str]) -> dict[str, float]:
    from bench_fleet import _proc_table

    table = _proc_table()
    out = dict.fromkeys(ROLES, 0.0)
    for pid, role in roles.items():
        if pid in table:
            out[role] += table[pid][1]
    return out


def measure_cpu(bench: Bench, roles: dict[int, str], k: int, n: int, gap: float) -> dict:
    """CPU ms per call at size ``k``, by process role; the idle baseline over
    the same wall time is taken off."""
    raw = {}
    for mode in ("idle", *MODES):
        before, t0, calls = cpu_by_role(roles), perf_counter(), []
        for _ in range(n):
            time.sleep(gap)
            if mode != "idle":
                calls.append(bench.one_call(mode, k))
        if mode == "idle":
            time.sleep(0.05 * n)
        after, wall = cpu_by_role(roles), perf_counter() - t0
        raw[mode] = ({r: after[r] - before[r] for r in ROLES}, wall, calls)
    idle, idle_wall, _ = raw["idle"]
    result = {}
    for mode in MODES:
        used, wall, calls = raw[mode]
        result[mode] = {r: max(0.0, used[r] - idle[r] / idle_wall * wall) * 1000 / n for r in ROLES}
        result[mode]["total"] = sum(result[mode][r] for r in ROLES)
        result[mode]["wall"] = pct(calls, 50) * 1000
    return result


# --- the measurement -----------------------------------------------------------------------


def measure(bench: Bench, sizes: list[int], repeat: int, gap: float) -> dict:
    samples = {k: {m: [] for m in MODES} for k in sizes}
    for rep in range(repeat):
        shift = rep % len(sizes)
        for i, k in enumerate(sizes[shift:] + sizes[:shift]):
            r = (rep + i) % len(MODES)
            for mode in MODES[r:] + MODES[:r]:
                if gap:
                    time.sleep(gap)
                samples[k][mode].append(bench.one_call(mode, k))
    return samples


def rows_of(samples: dict) -> list[dict]:
    rows = []
    for k, d in samples.items():
        s = {m: summary(d[m]) for m in MODES}
        rows.append(
            {
                "size": k,
                **s,
                "edge_over_dask_p50": s["edge"]["p50_ms"] / s["dask"]["p50_ms"],
                "edge_over_px_p50": s["edge"]["p50_ms"] / s["px"]["p50_ms"],
                "edge_over_dask_p90": s["edge"]["p90_ms"] / s["dask"]["p90_ms"],
                "edge_over_px_p90": s["edge"]["p90_ms"] / s["px"]["p90_ms"],
            }
        )
    for r in rows:
        r["faster_than_px"] = r["edge"]["p50_ms"] < r["px"]["p50_ms"]
        r["within_dask_goal"] = r["edge_over_dask_p50"] <= GOAL_VS_DASK
    return rows


def start_ipp(n: int, workdir: str, timeout: int):
    import ipyparallel as ipp

    cluster = ipp.Cluster(
        n=n,
        profile_dir=os.path.join(workdir, "ipp-profile"),
        log_level=logging.WARNING,
        engine_timeout=timeout,
        controller_ip="127.0.0.1",
    )
    return cluster


def descendants() -> list:
    """Every process this one started, and theirs (runners included)."""
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def reap(procs: list, timeout: float = 15) -> None:
    """Wait for ``procs`` (taken before the shutdown: runners are re-parented
    when their site exits) to end; kill what is left, and say so."""
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            print(f"  process {p.pid} ({' '.join(p.cmdline()[:4])}) still running: killing it", file=sys.stderr)
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1,4,8,16", help="comma-separated sites/engines per cell (default 1,4,8,16)")
    ap.add_argument("--repeat", type=int, default=30, help="measured repetitions per size and mode (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first (default 3)")
    ap.add_argument(
        "--gap",
        type=float,
        default=25,
        help="ms of idle before each call (default 25, as in bench_fleet.py: a cell run on its own)",
    )
    ap.add_argument("--output-size", type=int, default=4, help="sites/engines for the output test (default 4)")
    ap.add_argument("--output-lines", type=int, default=1000, help="lines each site prints (default 1000)")
    ap.add_argument("--output-repeat", type=int, default=5, help="output-test repetitions per magic (default 5)")
    ap.add_argument(
        "--breakdown-repeat",
        type=int,
        default=15,
        help="%%%%edge cells timed step by step at the smallest and largest size (0: skip; default 15)",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="N",
        help="cProfile N %%%%edge cells at the largest size (default: 20, only when a goal is missed; 0: never)",
    )
    ap.add_argument(
        "--cpu-repeat",
        type=int,
        default=15,
        help="calls per mode for CPU by process at the largest size (0: skip; default 15)",
    )
    ap.add_argument("--json", metavar="OUT", help="save every figure (and the raw samples) as JSON")
    ap.add_argument("--start-timeout", type=float, default=180, help="seconds for the fleet and engines to come up")
    args = ap.parse_args(argv)

    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    if not sizes or sizes[0] < 1:
        ap.error("--sizes: positive numbers")
    n = max([*sizes, args.output_size])
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("ipyparallel").setLevel(logging.WARNING)

    exit_on_sigterm()
    began = perf_counter()
    workdir = tempfile.mkdtemp(prefix="jupyter-edge-bench-magic-")
    os.environ["IPYTHONDIR"] = os.path.join(workdir, "ipython")  # the shell's and the engines' profile
    os.environ.setdefault("IPP_NONINTERACTIVE", "0")  # %%px streams output, as in a notebook

    fleet_procs = ProcessFleet(n, workdir)
    shell = cluster = rc = None
    failed = True
    try:
        try:
            import ipyparallel as ipp
        except ImportError:
            print("this benchmark compares with ipyparallel: pip install ipyparallel", file=sys.stderr)
            failed = False
            return 2
        import distributed
        import IPython
        from IPython.testing.globalipapp import get_ipython
        from IPython.utils.capture import capture_output

        print(f"starting {n} jupyter-edge sites and {n} ipyparallel engines on {os.cpu_count()} CPU(s) ...", flush=True)
        fleet_procs.start(args.start_timeout)
        cluster = start_ipp(n, workdir, int(args.start_timeout))
        t_ipp = perf_counter()
        cluster.start_cluster_sync()
        rc = cluster.connect_client_sync()
        rc.wait_for_engines(n, timeout=args.start_timeout, interactive=False)
        ipp_up = perf_counter() - t_ipp
        engines = sorted(rc.ids)[:n]

        shell = get_ipython()
        shell.run_line_magic("load_ext", "jupyter_edge")
        with capture_output() as out:
            shell.run_line_magic("edge", f"connect --scheduler-file {fleet_procs.scheduler_file}")
        magics = shell.magics_manager.registry["EdgeMagics"]
        fleet = magics.fleet
        sites = fleet.wait_for_sites(n, timeout=args.start_timeout)
        fleet_procs.check_alive()
        by_name = {s.name: s.address for s in sites}
        names = fleet_procs.names
        addrs = [by_name[x] for x in names]
        for k in [*sizes, args.output_size]:
            view = rc[engines[:k]]
            view.block = True
            view.activate(f"_{k}")  # %%px_K on engines[:K]
        print(
            f"fleet and engines up in {perf_counter() - began:.1f}s (ipyparallel: {ipp_up:.1f}s); {out.stdout.strip()}",
            flush=True,
        )

        bench = Bench(shell, fleet.client, names, addrs, engines)
        for _ in range(args.warmup):
            for k in sizes:
                for mode in MODES:
                    bench.one_call(mode, k)

        gap = args.gap / 1000
        t_measure = perf_counter()
        samples = measure(bench, sizes, args.repeat, gap)
        measure_s = perf_counter() - t_measure
        rows = rows_of(samples)
        fleet_procs.check_alive()

        t_out = perf_counter()
        output = measure_output(bench, args.output_size, args.output_lines, args.output_repeat)
        output_s = perf_counter() - t_out

        breakdown = None
        if args.breakdown_repeat:
            breakdown = measure_breakdown(bench, sorted({sizes[0], sizes[-1]}), args.breakdown_repeat, gap)

        cpu = None
        if args.cpu_repeat and os.path.isdir("/proc/self"):
            cpu = measure_cpu(bench, process_roles(fleet_procs), sizes[-1], args.cpu_repeat, gap)

        met = all(r["faster_than_px"] and r["within_dask_goal"] for r in rows)
        output_ok = output["edge"]["complete_runs"] == output["edge"]["runs"]
        n_prof = args.profile if args.profile is not None else (0 if met else 20)
        profiles = profile_edge(bench, sizes[-1], n_prof, gap) if n_prof else None
        fleet_procs.check_alive()
        total_s = perf_counter() - began

        report(
            args,
            sizes,
            rows,
            output,
            breakdown,
            cpu,
            profiles,
            n_prof,
            measure_s,
            output_s,
            total_s,
            versions={
                "ipyparallel": ipp.__version__,
                "distributed": distributed.__version__,
                "ipython": IPython.__version__,
            },
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    {
                        "config": {
                            "sizes": sizes,
                            "repeat": args.repeat,
                            "warmup": args.warmup,
                            "gap_ms": args.gap,
                            "sites": n,
                            "engines": n,
                            "cpus": os.cpu_count(),
                            "python": platform.python_version(),
                            "distributed": distributed.__version__,
                            "ipyparallel": ipp.__version__,
                            "ipython": IPython.__version__,
                            "goals": {"edge_over_dask_p50_max": GOAL_VS_DASK, "edge_p50_below_px_p50": True},
                        },
                        "round_trip": rows,
                        "samples_ms": {
                            str(k): {m: [x * 1000 for x in v] for m, v in d.items()} for k, d in samples.items()
                        },
                        "output": {"size": args.output_size, "lines": args.output_lines, **output},
                        "breakdown": {str(k): v for k, v in (breakdown or {}).items()},
                        "cpu_ms_per_call": cpu,
                        "cpu_size": sizes[-1],
                        "profiles": profiles,
                        "goals_met": met,
                        "output_complete": output_ok,
                        "measure_s": measure_s,
                        "output_s": output_s,
                        "total_s": total_s,
                    },
                    f,
                    indent=2,
                )
            print(f"\nfigures saved to {args.json}")
        failed = False
        return 0 if met and output_ok else 1
    finally:
        started = descendants()
        if shell is not None:
            try:
                shell.run_line_magic("edge", "disconnect")
            except Exception as e:
                print(f"  %edge disconnect failed: {e!r}", file=sys.stderr)
        if rc is not None:
            rc.close()
        if cluster is not None:
            try:
                cluster.stop_cluster_sync()
            except Exception as e:
                print(f"  stopping the ipyparallel cluster failed: {e!r}", file=sys.stderr)
        fleet_procs.close()
        reap(started)
        if failed:
            print(f"the fleet's logs are kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --- the report ----------------------------------------------------------------------------


def report(args, sizes, rows, output, breakdown, cpu, profiles, n_prof, measure_s, output_s, total_s, versions):
    n = max([*sizes, args.output_size])
    print(
        f"\n%%edge vs plain Dask vs %%px: {n} jupyter-edge process sites (1 thread + 1 runner each) and "
        f"{n} ipyparallel engines, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"IPython {versions['ipython']}, distributed {versions['distributed']}, "
        f"ipyparallel {versions['ipyparallel']}"
    )
    print(
        f"round trip of a cell `1` (Dask: a function returning 1), in ms; {args.repeat} interleaved "
        f"repetitions per size and mode, {args.gap:g} ms idle before each call, after {args.warmup} "
        "warm-up rounds"
    )
    head = (
        f"{'size':>4} | {'%%edge p50':>10} {'p90':>6} | {'Dask p50':>8} {'p90':>6} | {'%%px p50':>8} {'p90':>6} | "
        f"{'edge/Dask':>9} {'edge/px':>7} | goals: <= {GOAL_VS_DASK} x Dask, < px"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        e, d, p = r["edge"], r["dask"], r["px"]
        verdict = (
            ", ".join(
                x
                for x, bad in (
                    ("OVER Dask goal", not r["within_dask_goal"]),
                    ("SLOWER than px", not r["faster_than_px"]),
                )
                if bad
            )
            or "ok"
        )
        print(
            f"{r['size']:>4} | {e['p50_ms']:10.2f} {e['p90_ms']:6.2f} | {d['p50_ms']:8.2f} {d['p90_ms']:6.2f} | "
            f"{p['p50_ms']:8.2f} {p['p90_ms']:6.2f} | {r['edge_over_dask_p50']:9.2f} "
            f"{r['edge_over_px_p50']:7.2f} | {verdict}"
        )
    g1 = all(r["faster_than_px"] for r in rows)
    g2 = all(r["within_dask_goal"] for r in rows)
    print(f"goal: %%edge faster than %%px at every size (p50): {'MET' if g1 else 'NOT MET'}")
    print(
        f"goal: %%edge within {GOAL_VS_DASK}x plain Dask submit+gather at every size (p50): "
        f"{'MET' if g2 else 'NOT MET'}"
    )

    print(
        f"\noutput: a cell printing {args.output_lines} lines at each of {args.output_size} sites/engines, "
        f"{args.output_repeat} runs each after a warm-up:"
    )
    for mode in ("edge", "px"):
        o = output[mode]
        lines = args.output_lines * args.output_size
        print(
            f"  {LABEL[mode]:<7} wall p50 {o['wall']['p50_ms']:8.2f} ms  p90 {o['wall']['p90_ms']:8.2f} ms  "
            f"({lines / (o['wall']['p50_ms'] / 1000):,.0f} lines/s); every line arrived whole and in order "
            f"in {o['complete_runs']}/{o['runs']} runs"
        )
        bad = o["first_incomplete"]
        if bad:
            short = {t: v for t, v in bad["per_target"].items() if not v["whole_and_in_order"]}
            print(f"    first incomplete run: {json.dumps(short)}; stray labels {bad['stray_labels']}")
    ok = output["edge"]["complete_runs"] == output["edge"]["runs"]
    print(f"check: every %%edge line arrived: {'OK' if ok else 'NO'}")

    if breakdown:
        print(
            "\nwhere a %%edge cell's time goes (p50 ms per cell; each step timed by a wrapper this script "
            f"installs; {args.breakdown_repeat} cells per size, interleaved with the two references):"
        )
        ks = list(breakdown)
        print(f"  {'':<34}" + "".join(f"{'size ' + str(k):>12}" for k in ks))
        print(
            f"  {'%%edge (run_cell_magic)':<34}"
            + "".join(f"{breakdown[k]['%%edge total']['p50_ms']:12.2f}" for k in ks)
        )
        for label, _, _ in StepTimer.STEPS:
            print(f"  {label:<34}" + "".join(f"{breakdown[k]['steps'][label]['p50_ms']:12.2f}" for k in ks))
        print(
            f"  {'ref: Fleet.run(one) (no magic)':<34}"
            + "".join(f"{breakdown[k]['Fleet.run(one) (no magic)']['p50_ms']:12.2f}" for k in ks)
        )
        print(f"  {'ref: plain Dask':<34}" + "".join(f"{breakdown[k]['plain Dask']['p50_ms']:12.2f}" for k in ks))
    if cpu:
        print(
            f"\nCPU ms per call at size {sizes[-1]}, by process (idle baseline taken off; "
            f"{args.cpu_repeat} calls each; wall is the call's own round trip):"
        )
        short = {
            ROLES[0]: "client",
            ROLES[1]: "scheduler",
            ROLES[2]: "workers",
            ROLES[3]: "runners",
            ROLES[4]: "ipp ctrl",
            ROLES[5]: "ipp engines",
        }
        print(f"  {'':<11}" + "".join(f"{short[r]:>12}" for r in ROLES) + f"{'total':>10}{'wall':>9}")
        for mode in MODES:
            c = cpu[mode]
            print(
                f"  {LABEL[mode]:<11}" + "".join(f"{c[r]:12.2f}" for r in ROLES) + f"{c['total']:10.2f}{c['wall']:9.2f}"
            )
    if profiles:
        print(f"\ncProfile of {n_prof} %%edge cells at size {sizes[-1]} (client side):")
        for name, text in profiles.items():
            print(f"\n=== {name} ===")
            print(_trim_profile(text))
    print(f"\nround trips {measure_s:.1f}s, output test {output_s:.1f}s, whole run {total_s:.1f}s")


def _trim_profile(text: str) -> str:
    keep = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("Ordered by", "List reduced")):
            continue
        keep.append(line.replace(sys.prefix, "<py>").replace(os.getcwd() + os.sep, ""))
    return "\n".join(keep)


if __name__ == "__main__":
    sys.exit(main())
