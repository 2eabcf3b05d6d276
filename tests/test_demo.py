"""The demo fleet, embedded and through `jupyter-edge demo`, and connecting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import dask.config
import pytest
from distributed import Client

from jupyter_edge import Fleet, config
from jupyter_edge.demo import plan_sites
from jupyter_edge.local import local_cluster


def test_embedded_demo_has_replicas_a_gpu_and_sample_data(tmp_path):
    with Fleet.demo(sites=4, data_dir=str(tmp_path), s3=True) as fleet:
        sites = {s.name: s for s in fleet.sites()}
        assert set(sites) == {"berlin", "paris", "boston", "tokyo"}
        assert [n for n, s in sites.items() if s.gpu_count] == ["boston"]
        datasets = fleet.datasets()
        assert datasets["weather"].shards["eu"] == ["berlin", "paris"], "the eu shard is replicated"
        assert datasets["archive"].kind == "s3" and datasets["archive"].files == 4
        res = fleet.run(lambda dataset: len(dataset.read_parquet()), data="sensors", timeout=60)
        assert dict(res) == dict.fromkeys(sites, 4000)
        archive = fleet.run(lambda dataset: int(dataset.read_csv().units.sum()), data="archive", timeout=60)
        assert archive.ok and set(archive) == {"boston", "tokyo"}
    assert fleet.client.status == "closed"


def test_demo_plan_grows_past_four_sites():
    names = [s.name for s in plan_sites(6)]
    assert names == ["berlin", "paris", "boston", "tokyo", "site-5", "site-6"]
    with pytest.raises(ValueError, match="at least one site"):
        plan_sites(0)


@pytest.mark.e2e
def test_demo_command_serves_a_fleet_and_stops_on_ctrl_c(tmp_path):
    scheduler_file = tmp_path / "demo.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "demo",
            "--port",
            "0",
            "--no-s3",
            "--scheduler-file",
            str(scheduler_file),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert proc.poll() is None, "the demo exited at start"
            assert time.monotonic() < deadline, "the demo did not start in 60 s"
            time.sleep(0.1)
        with Fleet.connect(scheduler_file=str(scheduler_file)) as fleet:
            assert len(fleet.wait_for_sites(4, timeout=60)) == 4
            assert "archive" not in fleet.datasets()
            res = fleet.run(lambda site: site.name, all=True, timeout=60)
            assert sorted(res) == ["berlin", "boston", "paris", "tokyo"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "4 sites at tcp://127.0.0.1:" in out and "jupyter-edge demo stopped" in out


def test_fleet_installs_its_scheduler_plugin_on_a_plain_scheduler(mixed_sites):
    # Sites that reported before the plugin existed are replayed from Dask's event log.
    cluster = local_cluster(mixed_sites[:2], scheduler_plugin=False)
    client = Client(cluster, set_as_default=False)
    try:
        fleet = Fleet(client)
        assert sorted(s.name for s in fleet.wait_for_sites(2)) == ["berlin", "paris"]
        assert dict(fleet.run(lambda site: site.name, sites=["paris"], timeout=60)) == {"paris": "paris"}
    finally:
        client.close()
        cluster.close()


def test_address_precedence(monkeypatch):
    monkeypatch.delenv(config.SCHEDULER_ENV, raising=False)
    with dask.config.set({"edge.scheduler-address": "tcp://from-config:1"}):
        assert config.scheduler_address() == "tcp://from-config:1"
        monkeypatch.setenv(config.SCHEDULER_ENV, "tcp://from-env:2")
        assert config.scheduler_address() == "tcp://from-env:2"
        assert config.scheduler_address("tcp://explicit:3") == "tcp://explicit:3"


def test_connect_without_an_address_says_how(monkeypatch):
    monkeypatch.delenv(config.SCHEDULER_ENV, raising=False)
    with dask.config.set({"edge.scheduler-address": None}), pytest.raises(ValueError, match="JUPYTER_EDGE_SCHEDULER"):
        Fleet.connect()


def test_connect_to_nothing_fails_in_bounded_time():
    started = time.monotonic()
    with pytest.raises(OSError):
        Fleet.connect("tcp://127.0.0.1:9", timeout="2s")
    assert time.monotonic() - started < 20
