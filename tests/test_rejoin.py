"""Sites rejoin by themselves: the backoff between attempts, and a real hub restart
(the scheduler SIGKILLed and started again on the same port) that every site
survives without being touched, its running execution stopped."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import write_sensors
from processes import stop_all

from jupyter_edge import Fleet
from jupyter_edge.site.rejoin import Backoff

SITES = ["berlin", "paris"]


def test_backoff_grows_to_its_cap_and_spreads_sites_out():
    backoff = Backoff(1.0, 30.0, factor=2.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling, f"expected a delay in [{ceiling / 2}, {ceiling}], got {delay:.2f}"
    backoff.reset()
    assert backoff.next() <= 1.0, "after a join, the next break starts from the first delay"
    firsts = {round(Backoff(1.0, 30.0, rng=random.Random(seed)).next(), 3) for seed in range(20)}
    assert len(firsts) > 10, "sites that lose the scheduler together should not all retry at the same instant"
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(0, 30)


def start_cli(folder, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``jupyter-edge ARGS`` in the background, its output appended to ``folder/name.log``."""
    with open(folder / f"{name}.log", "ab") as log:
        return subprocess.Popen(cli(*args), stdout=log, stderr=subprocess.STDOUT, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_edge.cli", *args]


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_hub_restart_loses_no_site(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = {}

    def start(name: str, *args: str) -> subprocess.Popen:
        logs[name] = tmp_path / f"{name}.log"
        return start_cli(tmp_path, name, *args)

    def said(name: str) -> str:
        return logs[name].read_text(errors="replace")[-3000:]

    scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
    sites = {
        name: start(
            name,
            "worker",
            address,
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--dataset",
            f"sensors={write_sensors(tmp_path / name / 'sensors', name)}",
        )
        for name in SITES
    }
    marker = tmp_path / "written-after-the-restart"
    tokyo = start("tokyo", "worker", address, "--name", "tokyo", "--host", "127.0.0.1", "--label", "region=ap")
    try:
        with Fleet.connect(address, timeout=30) as fleet:
            fleet.wait_for_sites(3, timeout=60)
            done = fleet.run(lambda: 42, sites=["paris"], timeout=60)
            tokyo.terminate()  # a site that left before the restart: known, offline
            tokyo.wait(30)
            deadline = time.monotonic() + 30
            while fleet.catalog().sites["tokyo"].state != "offline":
                assert time.monotonic() < deadline, "tokyo never went offline"
                time.sleep(0.1)
            time.sleep(1.5)  # the hub saves about once a second
            # berlin is busy when the hub goes: its execution must stop at the site.
            fleet.submit(
                lambda path=str(marker): (time.sleep(8), open(path, "w").close()), sites=["berlin"], timeout=120
            )
            deadline = time.monotonic() + 30
            while not any(j.state == "running" for j in fleet.jobs()):
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.1)
            time.sleep(1.5)  # the hub saves about once a second: a kill loses at most that
            scheduler.send_signal(signal.SIGKILL)
            scheduler.wait(10)
        time.sleep(2)
        scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
        with Fleet.connect(address, timeout=30) as fleet:
            names = sorted(s.name for s in fleet.wait_for_sites(2, timeout=90))
            assert names == SITES, f"expected every site back, found {names}"
            for name, proc in sites.items():
                assert proc.poll() is None, f"{name} exited instead of rejoining:\n{said(name)}"
                assert f"site {name}" in said(name) and "rejoined" in said(name), said(name)
            result = fleet.run(lambda site: site.name, all=True, timeout=60)
            assert dict(result) == {name: name for name in SITES}
            # The hub kept its memory: the site that had left, and the jobs, the one
            # running at the restart ended lost with that reason.
            tokyo_now = fleet.catalog().sites["tokyo"]
            assert tokyo_now.state == "offline" and tokyo_now.labels["region"] == "ap", tokyo_now
            assert tokyo_now.labels["edge.executor"] == "python", "its own labels are kept too"
            jobs = {j.id: j for j in fleet.jobs()}
            assert jobs[done.job].executions[0].state == "done", "a finished job should survive the restart"
            lost = [j for j in jobs.values() if j.executions[0].site == "berlin" and j.id != result.job]
            assert lost and lost[0].executions[0].state == "lost", [j.to_dict() for j in jobs.values()]
            assert "the scheduler restarted" in lost[0].executions[0].error
        time.sleep(6)  # past when the stopped execution would have written its file (8 s after it started)
        assert not marker.exists(), "the execution running when the hub went on at the site"
    finally:
        stop_all([scheduler, tokyo, *sites.values()])


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_notebook_rides_through_a_hub_restart(tmp_path):
    """A kernel keeps its %edge connect: during the outage a cell fails at once,
    saying the scheduler is unreachable; after it, the next cell runs, live output included."""
    from conftest import run_in_kernel, stream_text
    from jupyter_client.manager import start_new_kernel

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"

    def start(name: str, *args: str) -> subprocess.Popen:
        return start_cli(tmp_path, name, *args)

    scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
    site = start("berlin", "worker", address, "--name", "berlin", "--host", "127.0.0.1")
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        with Fleet.connect(address, timeout=30) as fleet:
            fleet.wait_for_sites(1, timeout=60)
        outputs, status = run_in_kernel(kc, f"%load_ext jupyter_edge\n%edge connect {address}")
        assert status == "ok", outputs
        outputs, status = run_in_kernel(kc, "%%edge --all\nkept = 'kept at ' + site.name\nprint('before', site.name)")
        assert status == "ok" and "[stdout:berlin] before berlin" in stream_text(outputs), outputs

        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait(10)
        started = time.monotonic()
        outputs, status = run_in_kernel(kc, "%%edge --all\nprint('during')", timeout=60)
        took = time.monotonic() - started
        said = str(outputs)
        assert status == "error" and f"the fleet's scheduler at {address} is unreachable" in said, said
        assert took < 15, f"a cell during the outage took {took:.1f} s to fail"

        scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
        with Fleet.connect(address, timeout=30) as fleet:
            fleet.wait_for_sites(1, timeout=90)
        outputs, status = run_in_kernel(kc, "%%edge --all\nprint('after', site.name, kept)", timeout=90)
        # The site rejoined with its runners: this notebook's names there survived the restart.
        assert status == "ok" and "[stdout:berlin] after berlin kept at berlin" in stream_text(outputs), outputs

        # A quick restart that no cell noticed: Dask's client finds the new scheduler by
        # itself, and the next cell still gets its output and its value.
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait(10)
        scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
        with Fleet.connect(address, timeout=30) as fleet:
            fleet.wait_for_sites(1, timeout=90)
        time.sleep(2)
        outputs, status = run_in_kernel(kc, "%%edge --all\nprint('again', site.name)\n6 * 7", timeout=90)
        text = stream_text(outputs) + str(outputs)
        assert status == "ok" and "[stdout:berlin] again berlin" in text and "Out[berlin]: 42" in text, outputs
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        stop_all([scheduler, site])


@pytest.mark.e2e
@pytest.mark.netns
@pytest.mark.timeout(240)
def test_a_site_whose_link_drops_comes_back_by_itself(tmp_path):
    """A site in its own namespace loses its link (ip link set ... down). A drop
    shorter than edge.liveness costs nothing; a longer one ends the running
    execution lost, and when the link returns the site rejoins untouched."""
    from netns import Host, require_netns

    require_netns()
    env = {**os.environ, "DASK_EDGE__LIVENESS": "4s"}
    scheduler_file = tmp_path / "scheduler.json"
    procs = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "ab") as log:
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        return procs[-1]

    host = Host(7)
    try:
        start(
            "scheduler", cli("scheduler", "--host", "0.0.0.0", "--port", "0", "--scheduler-file", str(scheduler_file))
        )
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "no scheduler file"
            time.sleep(0.05)
        port = json.loads(scheduler_file.read_text())["address"].rsplit(":", 1)[1]
        site = start(
            "lyon",
            host.command(cli("worker", f"tcp://{host.gateway}:{port}", "--name", "lyon", "--host", host.address)),
        )
        with Fleet.connect(f"tcp://127.0.0.1:{port}", timeout=30) as fleet:
            fleet.wait_for_sites(1, timeout=60)

            # A short drop (2 s, under the 4 s liveness): the job carries on.
            job = fleet.submit(lambda: (time.sleep(5), "through")[1], sites=["lyon"], timeout=60)
            time.sleep(1)
            _run("ip", "link", "set", host.outside_if, "down")
            time.sleep(2)
            _run("ip", "link", "set", host.outside_if, "up")
            assert dict(job.result(timeout=60)) == {"lyon": "through"}, job.executions

            # A long drop (10 s): the running execution is lost, the site comes back by itself.
            job = fleet.submit(lambda: time.sleep(30), sites=["lyon"], timeout=120)
            time.sleep(1)
            _run("ip", "link", "set", host.outside_if, "down")
            try:
                result = job.result(timeout=30)
                assert result.executions["lyon"].state == "lost", result.executions
                assert fleet.catalog().sites["lyon"].state == "offline"
            finally:
                _run("ip", "link", "set", host.outside_if, "up")
            deadline = time.monotonic() + 90
            while fleet.catalog().sites["lyon"].state != "running":
                assert site.poll() is None, "the site's process ended instead of rejoining"
                assert time.monotonic() < deadline, (tmp_path / "lyon.log").read_text()[-3000:]
                time.sleep(0.5)
            assert dict(fleet.run(lambda site: site.name, sites=["lyon"], timeout=60)) == {"lyon": "lyon"}
    finally:
        stop_all(procs)
        host.close()


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_server_extension_shows_the_outage_and_recovers_by_itself(tmp_path):
    """What the sidebar polls (GET fleet, through the server's FleetManager): connected,
    then unreachable with its reason while the scheduler is down, then connected again
    with the site back, with nothing done by hand."""
    import asyncio

    from jupyter_edge.server.manager import FleetManager

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"

    def start(name: str, *args: str) -> subprocess.Popen:
        return start_cli(tmp_path, name, *args)

    def poll_until(manager, predicate, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            model = asyncio.run(manager.fleet())
            if predicate(model) or time.monotonic() > deadline:
                return model
            time.sleep(0.5)

    scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
    site = start("berlin", "worker", address, "--name", "berlin", "--host", "127.0.0.1")
    manager = FleetManager(address, connect_timeout=3)
    try:
        model = poll_until(manager, lambda m: [s["name"] for s in m["sites"]] == ["berlin"], 60)
        assert model["connection"]["status"] == "connected" and model["sites"][0]["state"] == "running", model

        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait(10)
        started = time.monotonic()
        model = poll_until(manager, lambda m: m["connection"]["status"] == "unreachable", 30)
        assert model["connection"]["status"] == "unreachable", model["connection"]
        assert model["connection"]["error"] and model["sites"] == [], model
        assert time.monotonic() - started < 20, "the outage took too long to show"

        scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
        model = poll_until(
            manager, lambda m: [(s["name"], s["state"]) for s in m["sites"]] == [("berlin", "running")], 90
        )
        assert model["connection"]["status"] == "connected", model["connection"]
        assert [(s["name"], s["state"]) for s in model["sites"]] == [("berlin", "running")], model["sites"]
    finally:
        asyncio.run(asyncio.to_thread(manager._close))
        stop_all([scheduler, site])
