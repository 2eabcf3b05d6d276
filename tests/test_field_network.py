"""The field's networks, for real: sites behind firewalls that drop every connection
in (network namespaces, as NAT does), and sites far away (behind a relay that
holds each chunk). The scheduler and the notebook side stay on this host. Every
feature runs against them, and the firewalls' counters show that nothing ever
tried to open a connection into a site."""

from __future__ import annotations

import _thread
import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import write_sensors
from IPython.utils.capture import capture_output
from netns import DelayRelay, Host, port_of, reachable, require_netns
from processes import stop_all

from jupyter_edge import Fleet, JobInterrupted, State

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.timeout(300)]

FIREWALLED = ["berlin", "paris"]  # in namespaces that drop every connection in
KIB, MIB = 1024, 1024 * 1024


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_edge.cli", *args]


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A CLI scheduler here; berlin and paris each in a firewalled namespace, tokyo
    here, each with its own sensors shard, berlin and paris a replica of weather@eu."""
    require_netns()
    root = tmp_path_factory.mktemp("field")
    procs: dict[str, subprocess.Popen] = {}
    hosts: dict[str, Host] = {}
    env = {**os.environ, "DASK_EDGE__RESULT_LIMIT": "256MiB"}

    def start(name: str, command: list[str]) -> None:
        with open(root / f"{name}.log", "wb") as log:
            procs[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    try:
        scheduler_file = root / "scheduler.json"
        start(
            "scheduler", cli("scheduler", "--host", "0.0.0.0", "--port", "0", "--scheduler-file", str(scheduler_file))
        )
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            assert procs["scheduler"].poll() is None, (root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "no scheduler file in 30 s"
            time.sleep(0.05)
        port = port_of(json.loads(scheduler_file.read_text())["address"])
        weather = root / "weather-eu"
        weather.mkdir()
        (weather / "rain.csv").write_text("day,mm\n1,3\n")
        for index, name in enumerate(FIREWALLED, start=1):
            host = hosts[name] = Host(index)
            host.firewall()
            start(
                name,
                host.command(
                    cli(
                        "worker",
                        f"tcp://{host.gateway}:{port}",
                        "--name",
                        name,
                        "--host",
                        host.address,
                        "--dataset",
                        f"sensors={write_sensors(root / name / 'sensors', name)}",
                        "--dataset",
                        f"weather={weather}@eu",
                    )
                ),
            )
        start(
            "tokyo",
            cli(
                "worker",
                f"tcp://127.0.0.1:{port}",
                "--name",
                "tokyo",
                "--host",
                "127.0.0.1",
                "--dataset",
                f"sensors={write_sensors(root / 'tokyo' / 'sensors', 'tokyo')}",
            ),
        )
        fleet = Fleet.connect(f"tcp://127.0.0.1:{port}")
        try:
            fleet.wait_for_sites(3, timeout=90)
            # The firewalls work: a connection into a site is dropped (and counted) ...
            for site in fleet.sites():
                if site.name in hosts:
                    assert not reachable(hosts[site.name].address, port_of(site.address)), (
                        f"{site.name}'s firewall let a connection in"
                    )
            # ... so from here on, anything the fleet tries to open into a site shows as a drop.
            baseline = {name: host.dropped() for name, host in hosts.items()}
            assert all(baseline.values()), f"the control connections were not counted: {baseline}"
            yield SimpleNamespace(
                fleet=fleet, hosts=hosts, procs=procs, baseline=baseline, port=port, root=root, start=start
            )
        finally:
            fleet.close()
    finally:
        stop_all(procs.values())
        for host in hosts.values():
            host.close()


def log(field, name: str) -> str:
    return (field.root / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.mark.parametrize("size", [KIB, MIB, 50 * MIB], ids=["1KiB", "1MiB", "50MiB"])
def test_values_of_any_size_come_back_from_every_site(field, size):
    result = field.fleet.run(lambda n=size: os.urandom(16) + b"v" * (n - 16), all=True, timeout=120)
    assert result.ok, result.errors
    assert {site: len(value) for site, value in result.items()} == dict.fromkeys(["berlin", "paris", "tokyo"], size)
    assert len({value[:16] for value in result.values()}) == 3, "each site's own value should come back"


def test_a_cell_prints_live_and_has_its_value(field):
    seen = []
    result = field.fleet.run_cell(
        "print('at', site.name)\nlen(dataset.read_parquet())",
        data="sensors",
        timeout=60,
        on_output=lambda site, outputs: seen.append(site),
    )
    assert dict(result) == {"berlin": 50, "paris": 50, "tokyo": 50}
    for name in ("berlin", "paris", "tokyo"):
        assert {"name": "stdout", "text": f"at {name}\n"} in result.outputs[name]
    assert sorted(set(seen)) == ["berlin", "paris", "tokyo"], "output should arrive live from every site"


def test_timeout_and_cancel_stop_every_site(field):
    started = time.monotonic()
    result = field.fleet.run(lambda: time.sleep(60), all=True, timeout=2)
    took = time.monotonic() - started
    assert {s: ex.state for s, ex in result.executions.items()} == dict.fromkeys(
        ["berlin", "paris", "tokyo"], State.TIMED_OUT
    )
    assert took < 12, f"a 2 s timeout took {took:.1f} s"
    job = field.fleet.submit(lambda: time.sleep(60), all=True, timeout=120)
    deadline = time.monotonic() + 30
    while sum(ex.state == State.RUNNING for ex in field.fleet.job(job.id).executions) < 3:
        assert time.monotonic() < deadline, "the job never ran everywhere"
        time.sleep(0.1)
    job.cancel()
    assert {ex.state for ex in job.executions} == {State.CANCELLED}


def test_an_interrupt_stops_the_job_at_every_site(field):
    threading.Timer(2.0, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(JobInterrupted) as interrupted:
        field.fleet.run(lambda: time.sleep(60), all=True, timeout=120)
    assert time.monotonic() - started < 15
    assert {ex.state for ex in interrupted.value.result.executions.values()} == {State.CANCELLED}


def test_the_magics_run_cells_and_reset_sessions(field, ipshell):
    ipshell.run_line_magic("load_ext", "jupyter_edge")
    with capture_output():
        ipshell.run_line_magic("edge", f"connect tcp://127.0.0.1:{field.port}")
    try:
        with capture_output() as out:
            ipshell.run_cell_magic("edge", "--all --timeout 60", "here = site.name\nprint('hello from', here)")
        for name in ("berlin", "paris", "tokyo"):
            assert f"[stdout:{name}] hello from {name}" in out.stdout, out.stdout
        with capture_output() as out:
            ipshell.run_line_magic("edge", "reset")
        assert "forgot this notebook's names at 3 site(s)" in out.stdout, out.stdout + out.stderr
        with capture_output() as out:
            ipshell.run_cell_magic("edge", "--all --timeout 60", "print('here' in globals())")
        for name in ("berlin", "paris", "tokyo"):
            assert f"[stdout:{name}] False" in out.stdout, "the reset should have forgotten the names"
    finally:
        with capture_output():
            ipshell.run_line_magic("edge", "disconnect")


def test_a_lost_firewalled_site_is_retried_on_its_replica(field):
    job = field.fleet.submit(lambda site: (time.sleep(4), site.name)[1], data="weather", retries=1, timeout=120)
    deadline = time.monotonic() + 30
    while not any(ex.state == State.RUNNING for ex in field.fleet.job(job.id).executions):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    first = job.executions[0].site
    field.procs[first].kill()
    result = job.result(timeout=90)
    other = next(name for name in FIREWALLED if name != first)
    assert dict(result) == {other: other}, f"expected the retry at {other}: {result.executions}"
    assert [ex.state for ex in job.executions] == [State.LOST, State.DONE]


def test_a_container_command_at_a_firewalled_site(field, engine):
    from dockerd import IMAGE

    host = field.hosts["clinic"] = Host(3)
    host.firewall()
    data = write_sensors(field.root / "clinic" / "sensors", "clinic")
    field.start(
        "clinic",
        host.command(
            cli(
                "worker",
                f"tcp://{host.gateway}:{field.port}",
                "--name",
                "clinic",
                "--host",
                host.address,
                "--dataset",
                f"sensors={data}",
                "--docker",
                engine.url,
            )
        ),
    )
    deadline = time.monotonic() + 90
    while "clinic" not in {s.name for s in field.fleet.sites()}:
        assert field.procs["clinic"].poll() is None, log(field, "clinic")
        assert time.monotonic() < deadline, f"clinic never joined:\n{log(field, 'clinic')}"
        time.sleep(0.2)
    field.baseline["clinic"] = host.dropped()
    result = field.fleet.run_command(
        ["sh", "-c", 'ls "$EDGE_DATASET_PATH"'], sites=["clinic"], data="sensors", image=IMAGE, timeout=120
    )
    assert dict(result) == {"clinic": 0}, result.errors
    assert {"name": "stdout", "text": "part-0.parquet\n"} in result.outputs["clinic"]


def test_nothing_opened_a_connection_into_a_site(field):
    """Run last: every drop the firewalls counted during the run is an attempt to dial a site."""
    now = {name: host.dropped() for name, host in field.hosts.items()}
    tried = {name: now[name] - field.baseline.get(name, 0) for name in now}
    assert all(n == 0 for n in tried.values()), f"connections into sites were attempted (dropped packets): {tried}"


# --- far sites -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def far_sites(field):
    """Sites 100 ms and 300 ms away: their links to the scheduler go through relays."""
    relays = {
        "far-100": DelayRelay("127.0.0.1", field.port, 0.05),
        "far-300": DelayRelay("127.0.0.1", field.port, 0.15),
    }
    try:
        for name, relay in relays.items():
            field.start(
                name, cli("worker", relay.address, "--name", name, "--host", "127.0.0.1", "--label", "distance=far")
            )
        deadline = time.monotonic() + 90
        while not set(relays) <= {s.name for s in field.fleet.sites() if s.state == "running"}:
            assert time.monotonic() < deadline, f"the far sites never joined:\n{log(field, 'far-300')}"
            time.sleep(0.2)
        yield relays
    finally:
        for name in relays:
            field.procs[name].terminate()
        for relay in relays.values():
            relay.close()


def test_far_sites_work_with_the_defaults_and_are_never_called_lost(field, far_sites):
    result = field.fleet.run(lambda site: (time.sleep(5), site.name)[1], where="distance=far", timeout=120)
    assert dict(result) == {"far-100": "far-100", "far-300": "far-300"}, result.executions
    started = time.monotonic()
    fanout = field.fleet.run(lambda site: site.name, where="distance=far", timeout=60)
    assert dict(fanout) == {"far-100": "far-100", "far-300": "far-300"}
    assert time.monotonic() - started < 10
    value = field.fleet.run(lambda: b"x" * (4 * MIB), sites=["far-300"], timeout=120)
    assert len(value["far-300"]) == 4 * MIB, value.errors


def test_far_sites_report_their_round_trips(field, far_sites):
    deadline = time.monotonic() + 60
    while True:
        rtt = {s.name: s.rtt for s in field.fleet.sites() if s.name in far_sites}
        if all(v is not None for v in rtt.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert 0.09 < rtt["far-100"] < 0.25, f"far-100 is 100 ms away, it reports {rtt}"
    assert 0.28 < rtt["far-300"] < 0.5, f"far-300 is 300 ms away, it reports {rtt}"
    status = subprocess.run(cli("status", f"tcp://127.0.0.1:{field.port}"), capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("far-300"))
    assert " ms " in line, f"jupyter-edge status should show far-300's round trip: {line}"


def test_a_timeout_ends_a_value_still_on_its_way(field, far_sites):
    """60 MiB from a site 300 ms away takes at least 1.5 s to travel (a window of
    3 chunks of 4 MiB per round trip): a 1 s timeout ends the call by its deadline
    (plus a little), the value half-sent."""
    started = time.monotonic()
    result = field.fleet.run(lambda: b"x" * (60 * MIB), sites=["far-300"], timeout=1)
    took = time.monotonic() - started
    assert result.executions["far-300"].state == State.TIMED_OUT, result.executions
    assert took < 5, f"a 1 s timeout took {took:.1f} s with the value in transit"
    after = field.fleet.run(lambda site: site.name, sites=["far-300"], timeout=60)
    assert dict(after) == {"far-300": "far-300"}, "the site should take the next job"


def test_a_notebook_that_goes_away_mid_transfer_frees_the_site(field, far_sites):
    """A client closed while 240 MiB is on its way from 300 ms away (at least 6 s
    at a window of 12 MiB per round trip): the site stops
    sending (Dask releases the client's task) and takes the next job at once,
    rather than waiting out edge.transfer.stall."""
    leaving = Fleet.connect(f"tcp://127.0.0.1:{field.port}")
    job = leaving.submit(lambda: b"x" * (240 * MIB), sites=["far-300"], timeout=120)
    deadline = time.monotonic() + 30
    while (state := field.fleet.job(job.id).executions[0].state) != State.RUNNING:
        assert time.monotonic() < deadline, f"the job never started: {state}"
        time.sleep(0.05)
    time.sleep(1.0)  # the value is made and on its way
    leaving.close()
    started = time.monotonic()
    after = field.fleet.run(lambda site: site.name, sites=["far-300"], timeout=30)
    assert dict(after) == {"far-300": "far-300"}, after.executions
    assert time.monotonic() - started < 15, "the site went on sending to a notebook that was gone"
