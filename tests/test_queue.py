"""Work that waits for offline sites (a queue timeout), end to end through the CLI:
a shard whose only holder is stopped waits ``queued``, with its reason, and runs
when the holder comes back; the queue timeout passing fails it, naming whom it
waited for, and keeps the other results; ``all=True`` reaches a site that was
offline when the job started."""

from __future__ import annotations

import time

import pytest
from conftest import write_sensors

from jupyter_edge import State

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def fleet_with_paris_away(cli_fleet, tmp_path):
    """berlin and paris, each with its own sensors shard; paris has left (offline)."""
    procs = cli_fleet()
    folders = {name: write_sensors(tmp_path / name / "sensors", name) for name in ("berlin", "paris")}
    for name, folder in folders.items():
        procs.add_site(name, "--label", "region=eu", "--dataset", f"sensors={folder}")
    fleet = procs.connect(2)
    procs.sites["paris"].terminate()
    procs.sites["paris"].wait(30)
    deadline = time.monotonic() + 30
    while fleet.catalog().sites["paris"].state != "offline":
        assert time.monotonic() < deadline, "paris never went offline"
        time.sleep(0.1)

    def bring_paris_back() -> None:
        procs.add_site("paris", "--label", "region=eu", "--dataset", f"sensors={folders['paris']}")

    yield fleet, bring_paris_back
    fleet.close()


def test_a_shard_waits_queued_for_its_holder_and_runs_when_it_rejoins(fleet_with_paris_away):
    fleet, bring_paris_back = fleet_with_paris_away
    job = fleet.submit_cell("len(dataset.read_parquet())", data="sensors", queue_timeout=120, timeout=180)
    queued = {ex.site: ex for ex in job.executions if ex.state == State.QUEUED}
    assert list(queued) == ["paris"], job.executions
    assert queued["paris"].error == "waiting for paris (offline) to rejoin"
    registry = {ex.site: ex for ex in fleet.job(job.id).executions}
    assert registry["paris"].state == State.QUEUED and "waiting for paris" in registry["paris"].error
    deadline = time.monotonic() + 60
    while {ex.site: ex.state for ex in fleet.job(job.id).executions}.get("berlin") != State.DONE:
        assert time.monotonic() < deadline, "berlin's shard should not wait for paris's"
        time.sleep(0.1)
    bring_paris_back()
    result = job.result(timeout=120)
    assert dict(result) == {"berlin": 50, "paris": 50}, result.executions
    assert {ex.site: ex.state for ex in fleet.job(job.id).executions} == {"berlin": "done", "paris": "done"}


def test_the_queue_timeout_fails_what_waited_and_keeps_the_rest(fleet_with_paris_away):
    fleet, _ = fleet_with_paris_away
    started = time.monotonic()
    result = fleet.run_cell("len(dataset.read_parquet())", data="sensors", queue_timeout=2, timeout=60)
    took = time.monotonic() - started
    assert dict(result) == {"berlin": 50}, "the shard that could run must keep its result"
    paris = result.executions["paris"]
    assert paris.state == State.FAILED and paris.error_type == "QueueTimeout", paris
    assert "shard 'paris' of 'sensors' waited 2 s for paris (offline)" in paris.error, paris.error
    assert took < 10, f"a 2 s queue timeout took {took:.1f} s"


def test_all_with_a_queue_reaches_a_site_that_comes_back(fleet_with_paris_away):
    fleet, bring_paris_back = fleet_with_paris_away
    job = fleet.submit(lambda site: site.name, all=True, queue_timeout=120, timeout=180)
    time.sleep(1)
    assert {ex.site: ex.state for ex in job.executions}["paris"] == State.QUEUED
    bring_paris_back()
    assert dict(job.result(timeout=120)) == {"berlin": "berlin", "paris": "paris"}


def test_a_cancel_ends_what_waits(fleet_with_paris_away):
    fleet, _ = fleet_with_paris_away
    job = fleet.submit(lambda site: site.name, all=True, queue_timeout=120, timeout=180)
    time.sleep(1)
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 5
    paris = next(ex for ex in job.executions if ex.site == "paris")
    assert paris.state == State.CANCELLED and "while it waited" in paris.error, paris


def test_work_for_a_busy_site_waits_queued_then_runs_or_times_out(fleet_with_paris_away):
    """berlin runs one execution at a time: a second job waits queued, with why, and
    runs once the slot frees up; with a shorter queue timeout it fails instead."""
    fleet, _ = fleet_with_paris_away
    busy = fleet.submit(lambda: time.sleep(4), sites=["berlin"], timeout=60)
    deadline = time.monotonic() + 30
    while fleet.job(busy.id).executions[0].state != State.RUNNING:
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.05)
    fleet.catalog()  # the load as the fleet sees it now

    waits = fleet.submit(lambda site: site.name, sites=["berlin"], queue_timeout=60, timeout=120)
    ex = waits.executions[0]
    assert ex.state == State.QUEUED and ex.error.startswith("waiting for a free slot at berlin"), ex
    gives_up = fleet.submit(lambda site: site.name, sites=["berlin"], queue_timeout=1, timeout=120)
    failed = gives_up.result(timeout=30).executions["berlin"]
    assert failed.state == State.FAILED and failed.error_type == "QueueTimeout", failed
    assert "waited 1 s for a free slot at berlin" in failed.error
    assert dict(waits.result(timeout=60)) == {"berlin": "berlin"}, waits.executions
    assert busy.result(timeout=30).executions["berlin"].state == State.DONE
