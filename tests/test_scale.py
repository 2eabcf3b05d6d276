"""The fleet at scale, through the CLI: idle sites keep no runners, many sites
share one process, and a large fan-out brings every site's output back whole.
The figures (idle CPU, RSS, fan-out p50) are in benchmarks/bench_scale.py."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from conftest import worker_usage

pytestmark = pytest.mark.e2e


def runners_of(proc: subprocess.Popen) -> list[psutil.Process]:
    """The runner processes a site process has started."""
    return [
        p
        for p in psutil.Process(proc.pid).children()
        if "jupyter_edge.site.runner_main" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    ]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} (waited {timeout:g} s)"
        time.sleep(0.1)


def test_runners_start_on_first_use_and_stop_when_unused(cli_fleet):
    fleet = cli_fleet({"DASK_EDGE__RUNNER__IDLE": "2s"})
    site = fleet.add_site("berlin")
    with fleet.connect(1) as edge:
        assert runners_of(site) == [], "a site that ran nothing started a runner"
        first = edge.run_cell("kept = 6 * 7\nkept", sites=["berlin"], session="nb-1", timeout=60)
        assert first["berlin"] == 42, first.errors
        assert len(runners_of(site)) == 1, "the first execution should have started one runner"

        wait_until(lambda: runners_of(site) == [], 30, "the runner did not stop after edge.runner.idle (2 s)")
        again = edge.run_cell("kept", sites=["berlin"], session="nb-1", timeout=60)
        ex = again.executions["berlin"]
        assert ex.error_type == "NameError", f"the names went with the runner, but got {ex.state}: {ex.error}"
        told = "".join(o.get("text", "") for o in ex.outputs)
        assert "names here were dropped" in told and "edge.runner.idle" in told, told
        # Told once: the next cell of the session is an ordinary one.
        third = edge.run_cell("kept = 1\nkept", sites=["berlin"], session="nb-1", timeout=60)
        assert third["berlin"] == 1 and "dropped" not in "".join(
            o.get("text", "") for o in third.executions["berlin"].outputs
        )


def test_a_site_process_runs_without_dasks_profiler_unless_asked(cli_fleet):
    """The site's own defaults (jupyter_edge/tuning.py), and a user's Dask setting winning over them."""
    fleet = cli_fleet()
    fleet.add_site("tuned")
    fleet.add_site("asked", env={"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "True"})
    with fleet.connect(2) as edge:
        found = edge.client.run(
            lambda dask_worker: (
                str(dask_worker.name),
                "profile" in dask_worker.periodic_callbacks,
                dask_worker.periodic_callbacks["tick"].callback_time,
            )
        )
        by_site = {name: (profiling, tick) for name, profiling, tick in found.values()}
        assert by_site["tuned"] == (False, 1000), by_site
        assert by_site["asked"][0] is True, "a Dask setting of the user's should win over the site's default"


def test_many_sites_in_one_process(cli_fleet, tmp_path):
    folder = tmp_path / "data"
    for n in range(3):
        (folder / f"shop-{n}").mkdir(parents=True)
        (folder / f"shop-{n}" / "sales.csv").write_text(f"shop,amount\n{n},{10 * n}\n")
    fleet = cli_fleet()
    proc = fleet.add_site(
        "shop-{n}", "--count", "3", "--label", "slot={n}", "--dataset", f"sales={folder}/shop-{{n}}@shop-{{n}}"
    )
    with fleet.connect(3) as edge:
        sites = {s.name: s for s in edge.sites()}
        assert sorted(sites) == ["shop-0", "shop-1", "shop-2"], sorted(sites)
        given = {name: {k: v for k, v in s.labels.items() if not k.startswith("edge.")} for name, s in sites.items()}
        assert given == {f"shop-{n}": {"slot": str(n)} for n in range(3)}
        assert edge.datasets()["sales"].shards == {f"shop-{n}": [f"shop-{n}"] for n in range(3)}
        assert len({s.address for s in sites.values()}) == 3, "each site is a worker of its own"
        result = edge.run(lambda dataset, site: (site.name, dataset.read_csv().amount.sum()), data="sales")
        assert sorted(result.values()) == [("shop-0", 0), ("shop-1", 10), ("shop-2", 20)], result.errors
        # Each site has runners of its own, all children of the one process.
        assert len(runners_of(proc)) == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--name", "shop", "--count", "2"], "--count 2 needs {n} in --name"),
        (["--name", "shop-{n}", "--count", "2", "--gpus", "auto"], "would share its GPUs"),
        (["--name", "shop-{n}", "--count", "0"], "--count"),
    ],
)
def test_count_explains_bad_input(flags, message):
    done = worker_usage(*flags)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.timeout(300)
def test_a_thousand_lines_from_each_of_128_sites_arrive_whole(cli_fleet):
    fleet = cli_fleet()
    fleet.add_site("site-{n}", "--count", "128")
    with fleet.connect(128) as edge:
        cell = "for i in range(1000):\n    print(site.name, i)\n"
        result = edge.run_cell(cell, all=True, timeout=240)
        assert result.ok and len(result) == 128, result.errors
        for name, ex in result.executions.items():
            text = "".join(o["text"] for o in ex.outputs if o.get("name") == "stdout")
            expected = "".join(f"{name} {i}\n" for i in range(1000))
            assert text == expected, f"{name}: {len(text.splitlines())} lines, first difference near line " + str(
                next(
                    (
                        i
                        for i, (a, b) in enumerate(zip(text.splitlines(), expected.splitlines(), strict=False))
                        if a != b
                    ),
                    "end",
                )
            )


@pytest.mark.parametrize("sites", [1, 16, 128, 1_000, 10_000])
def test_a_large_fleet_is_not_called_silent_between_its_heartbeats(sites):
    """Dask spaces heartbeats out as a fleet grows (51 s at 10,000 workers): a
    site is called silent only after three of them, and never before edge.liveness."""
    from distributed.scheduler import heartbeat_interval

    from jupyter_edge.scheduler import liveness_limit

    limit = liveness_limit(30.0, sites)
    assert limit >= 30.0
    assert limit >= 3 * heartbeat_interval(sites)
    if 3 * heartbeat_interval(sites) <= 30:
        assert limit == 30.0, "a fleet this size should keep edge.liveness as it is"


def test_the_hub_turns_off_work_stealing_and_raises_its_open_files_limit(tmp_path):
    """Both set by `jupyter-edge scheduler` for itself (jupyter_edge/tuning.py, cli.py):
    every edge task is pinned, and a thousand sites are a thousand connections."""
    import resource

    from processes import stop_all

    from jupyter_edge import Fleet

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit on open files here is {hard}: nothing to raise towards")
    scheduler_file = tmp_path / "fleet.json"
    with open(tmp_path / "scheduler.log", "wb") as log:
        hub = subprocess.Popen(
            [
                *(sys.executable, "-m", "jupyter_edge.cli", "scheduler", "--port", "0", "--host", "127.0.0.1"),
                *("--scheduler-file", str(scheduler_file)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        )
    try:
        wait_until(scheduler_file.exists, 30, "the scheduler did not write its file")
        with Fleet.connect(scheduler_file=str(scheduler_file)) as fleet:
            stealing = fleet.client.run_on_scheduler(lambda dask_scheduler: "stealing" in dask_scheduler.extensions)
            assert stealing is False, "the hub should run without Dask's work stealing"
        raised = psutil.Process(hub.pid).rlimit(psutil.RLIMIT_NOFILE)[0]
        assert raised > 256, f"the hub kept a soft limit of {raised} open files (started at 256)"
    finally:
        stop_all([hub])


def test_a_runner_starts_without_dasks_client(cli_fleet):
    """A runner imports what it needs, not the package's Fleet (and with it Dask's
    client): 70 ms and 18 MB instead of 520 ms and about 100 MB per start."""
    fleet = cli_fleet()
    fleet.add_site("berlin")
    with fleet.connect(1) as edge:
        loaded = edge.run_cell(
            "import sys\nsorted(m for m in ('distributed.client', 'jupyter_edge.fleet', 'fsspec') if m in sys.modules)",
            sites=["berlin"],
            timeout=60,
        )
        assert loaded["berlin"] == [], f"a runner loaded {loaded['berlin']} before any cell asked for them"
