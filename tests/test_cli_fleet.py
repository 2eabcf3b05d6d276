"""End to end through the CLI: a scheduler and sites as separate processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import worker_usage, write_sensors

from jupyter_edge import PlacementError, State

pytestmark = pytest.mark.e2e

#: Sites silent this long are lost (edge.liveness, through Dask's config variables).
LIVENESS = {"DASK_EDGE__LIVENESS": "3s"}


def status(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_edge.cli", "status", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def three_sites(cli_fleet, tmp_path):
    fleet = cli_fleet(LIVENESS)
    for name, region in (("berlin", "eu"), ("paris", "eu"), ("boston", "us")):
        folder = write_sensors(tmp_path / name / "sensors", name)
        fleet.add_site(
            name,
            "--label",
            f"region={region}",
            "--label",
            "tier=factory",
            "--dataset",
            f"sensors={folder}",
            "--gpus",
            "1" if name == "boston" else "none",
        )
    return fleet


def test_status_and_run(three_sites):
    # --wait-for-sites: what a start script uses to wait for a fleet just started.
    waited = status("--scheduler-file", three_sites.scheduler_file, "--wait-for-sites", "3", "--timeout", "60")
    assert waited.returncode == 0 and "3 site(s)" in waited.stdout, waited.stdout + waited.stderr
    too_many = status("--scheduler-file", three_sites.scheduler_file, "--wait-for-sites", "5", "--timeout", "1")
    assert too_many.returncode == 1, too_many.stdout
    assert "3 of 5 sites reported within 1.0s" in too_many.stderr and "Traceback" not in too_many.stderr
    fleet = three_sites.connect(3)
    with fleet:
        out = status("--scheduler-file", three_sites.scheduler_file)
        assert out.returncode == 0, out.stderr
        for expected in ("berlin", "paris", "boston", "region=eu", "sensors@berlin", "DATASET", "sensors"):
            assert expected in out.stdout, f"{expected!r} missing from status:\n{out.stdout}"
        assert "3 site(s)" in out.stdout
        res = fleet.run(
            lambda dataset, site: (site.name, len(dataset.read_parquet())),
            data="sensors",
            where="region=eu",
            timeout=60,
        )
        assert dict(res) == {"berlin": ("berlin", 50), "paris": ("paris", 50)}
        gpu = fleet.run(lambda site: os.environ["CUDA_VISIBLE_DEVICES"], gpus=1, timeout=60)
        assert dict(gpu) == {"boston": "0"}


def test_status_without_a_fleet_is_a_clear_error(tmp_path):
    out = status(
        "tcp://127.0.0.1:9",
    )
    assert out.returncode != 0
    assert "Error" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_worker_rejects_bad_flags(tmp_path):
    def worker(*flags):
        return worker_usage("--name", "x", *flags)

    out = worker("--label", "edge.executor=docker")
    assert out.returncode == 2 and "reserved" in out.stderr, out.stderr
    out = worker("--dataset", f"sensors={tmp_path}/missing")
    assert out.returncode == 2 and "is not a folder" in out.stderr, out.stderr
    out = worker("--gpus", "lots")
    assert out.returncode == 2 and "--gpus takes" in out.stderr, out.stderr


def _wait_running(fleet, job, sites, timeout=30):
    deadline = time.time() + timeout
    while True:
        states = {ex.site: ex.state for ex in fleet.job(job.id).executions}
        if all(states.get(s) == State.RUNNING for s in sites):
            return
        assert time.time() < deadline, f"not all of {sites} running after {timeout}s: {states}"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_a_site_that_dies_or_freezes_is_lost_and_the_rest_complete(three_sites, how):
    fleet = three_sites.connect(3)
    with fleet:

        def work(site):
            import time

            time.sleep(20 if site.name == "paris" else 2)
            return site.name

        job = fleet.submit(work, where="tier=factory", timeout=60)
        _wait_running(fleet, job, ["berlin", "paris", "boston"])
        victim = three_sites.sites["paris"]
        started = time.time()
        os.kill(victim.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        res = job.result(timeout=45)
        took = time.time() - started
        assert dict(res) == {"berlin": "berlin", "boston": "boston"}, "the other sites' results must survive"
        lost = res.executions["paris"]
        assert lost.state == State.LOST, (lost.state, lost.error)
        assert "site 'paris' was lost" in lost.error
        assert took < 15, f"a {how} was noticed only after {took:.1f}s (liveness 3s)"
        paris = fleet.catalog().sites["paris"]  # still known, offline, and why
        assert paris.state == "offline", paris.state
        reason = "silent for" if how == "freeze" else "its connection to the scheduler closed"
        assert reason in paris.offline_reason, paris.offline_reason
        # It is shown as such, and work that needs its shard says so at once instead of leaving it out.
        listing = status("--scheduler-file", three_sites.scheduler_file).stdout
        assert re.search(r"paris .*offline, seen \d+ s ago", listing), listing
        assert "paris (offline)" in listing, f"its shard should be marked as held offline:\n{listing}"
        with pytest.raises(PlacementError, match=r"shard 'paris' \(held by paris, offline\)"):
            fleet.run(lambda: 1, data="sensors", timeout=30)
        assert {ex.site: ex.state for ex in fleet.job(job.id).executions}["paris"] == State.LOST


def test_lost_execution_is_retried_on_another_replica(cli_fleet, tmp_path):
    fleet_procs = cli_fleet(LIVENESS)
    shard = write_sensors(tmp_path / "shared", "eu")
    for name in ("berlin", "paris"):
        fleet_procs.add_site(name, "--dataset", f"sensors={shard}@eu")
    fleet = fleet_procs.connect(2)
    with fleet:
        marker = tmp_path / "first-attempt"

        def work(site, dataset):
            import os
            import time

            if not os.path.exists(str(marker)):
                open(str(marker), "w").write(site.name)
                time.sleep(30)
            return site.name, dataset.shard

        job = fleet.submit(work, data="sensors", retries=1, timeout=60)
        deadline = time.time() + 30
        while not marker.exists():
            assert time.time() < deadline, "the first attempt never started"
            time.sleep(0.05)
        first = marker.read_text()
        os.kill(fleet_procs.sites[first].pid, signal.SIGKILL)
        res = job.result(timeout=45)
        other = "paris" if first == "berlin" else "berlin"
        assert dict(res) == {other: (other, "eu")}, "the shard must be finished by the other replica"
        assert res.ok, res.errors
        assert [(ex.site, ex.state, ex.attempt) for ex in res.attempts] == [
            (first, State.LOST, 1),
            (other, State.DONE, 2),
        ]


def test_a_site_that_comes_back_under_its_name_never_reruns_lost_work(cli_fleet, tmp_path):
    fleet_procs = cli_fleet(LIVENESS)
    fleet_procs.add_site("paris", "--label", "region=eu")
    fleet = fleet_procs.connect(1)
    with fleet:
        starts = tmp_path / "starts"
        starts.mkdir()

        def work(site):
            import os
            import time

            open(os.path.join(str(starts), str(time.time())), "w").close()
            time.sleep(30)

        job = fleet.submit(work, sites=["paris"], timeout=90)
        deadline = time.time() + 30
        while not list(starts.iterdir()):
            assert time.time() < deadline, "the work never started"
            time.sleep(0.05)
        os.kill(fleet_procs.sites["paris"].pid, signal.SIGKILL)
        fleet_procs.sites["paris"].wait(10)
        fleet_procs.add_site("paris", "--label", "region=eu")  # back, under the same name
        res = job.result(timeout=60)
        assert res.executions["paris"].state == State.LOST
        assert [s.name for s in fleet.wait_for_sites(1, timeout=60)] == ["paris"]
        time.sleep(3)  # time enough for a re-run to have started
        assert len(list(starts.iterdir())) == 1, "the lost execution ran again on the returning site"
        assert dict(fleet.run(lambda site: site.name, sites=["paris"], timeout=60)) == {"paris": "paris"}
