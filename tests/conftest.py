"""Fixtures: real fleets, in this process (fast) or as CLI subprocesses (end to end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest
from hypothesis import settings

from jupyter_edge import Fleet
from jupyter_edge.local import SiteSpec, local_cluster
from jupyter_edge.site.dataset import DatasetDeclaration

# A real Jupyter server for the REST routes' tests (jp_fetch, jp_serverapp).
pytest_plugins = ["pytest_jupyter.jupyter_server"]

# The fuzz tests draw new inputs on every run; CI (HYPOTHESIS_PROFILE=ci) draws
# the same ones each time, so whether a change lands does not hang on the draw.
# What a local run finds becomes an @example in tests/test_fuzz.py.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Sites keep audit logs in their state folder: the tests' sites (and the
# subprocesses they start) keep theirs in a folder of this run, not in ~.
os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="jupyter-edge-test-state-"))


def write_sensors(folder, site: str, rows: int = 50) -> str:
    """A small Parquet shard whose values say which site wrote them."""
    os.makedirs(folder, exist_ok=True)
    pd.DataFrame(
        {
            "device": [f"{site}-{i % 3}" for i in range(rows)],
            "value": [float(i) for i in range(rows)],
            "site": site,
        }
    ).to_parquet(os.path.join(folder, "part-0.parquet"), index=False)
    return str(folder)


@pytest.fixture(scope="module")
def mixed_sites(tmp_path_factory):
    """berlin, paris (eu), boston (us, 2 GPUs declared), tokyo (ap).

    ``sensors``: own shards at berlin, paris, boston; ``weather``: shard ``eu``
    replicated at berlin and paris, shard ``us`` at boston.
    """
    root = tmp_path_factory.mktemp("sites")
    eu_weather = root / "weather-eu"
    us_weather = root / "weather-us"
    for folder in (eu_weather, us_weather):
        folder.mkdir()
        (folder / "rain.csv").write_text("day,mm\n1,3\n2,5\n")

    def sensors(name):
        return DatasetDeclaration("sensors", write_sensors(root / name / "sensors", name), name)

    return [
        SiteSpec(
            "berlin",
            {"region": "eu", "tier": "factory"},
            datasets=[sensors("berlin"), DatasetDeclaration("weather", str(eu_weather), "eu")],
        ),
        SiteSpec(
            "paris",
            {"region": "eu", "tier": "store"},
            datasets=[sensors("paris"), DatasetDeclaration("weather", str(eu_weather), "eu")],
        ),
        SiteSpec(
            "boston",
            {"region": "us", "tier": "hospital"},
            gpus=2,
            datasets=[sensors("boston"), DatasetDeclaration("weather", str(us_weather), "us")],
        ),
        SiteSpec("tokyo", {"region": "ap"}),
    ]


@pytest.fixture(scope="module")
def fleet(mixed_sites):
    """A real scheduler and four real sites in this process, and a Fleet on them."""
    cluster = local_cluster(mixed_sites)
    from distributed import Client

    client = Client(cluster, set_as_default=False)
    fleet = Fleet(client)
    fleet.wait_for_sites(len(mixed_sites))
    yield fleet
    fleet.close()
    cluster.close()


@pytest.fixture(scope="session")
def ipshell():
    """IPython's test shell, started once for the whole session."""
    from IPython.testing import globalipapp

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()  # rebound to the running shell by start_ipython()
    assert shell is not None
    return shell


@pytest.fixture(scope="module")
def edge_shell(fleet, ipshell):
    """The test shell with the %edge magics loaded and connected to this module's fleet."""
    from IPython.utils.capture import capture_output

    ipshell.run_line_magic("load_ext", "jupyter_edge")
    with capture_output() as out:
        ipshell.run_line_magic("edge", f"connect {fleet.address}")
    assert "4 site(s)" in out.stdout, out.stdout
    yield ipshell
    ipshell.run_line_magic("edge", "disconnect")


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """A dockerd of the tests' own with the Python image imported (tests/dockerd.py)."""
    from dockerd import IMAGE, Engine, python_rootfs, require_docker

    require_docker()
    tarball = python_rootfs()
    engine = Engine(tmp_path_factory.mktemp("dockerd"))
    try:
        engine.import_image(tarball, IMAGE)
        yield engine
    finally:
        engine.close()


# --- subprocess fleets through the CLI -------------------------------------


class CliFleet:
    """``jupyter-edge scheduler`` and ``jupyter-edge worker`` processes."""

    def __init__(self, tmp_path, env: dict | None = None):
        self.tmp_path = tmp_path
        self.scheduler_file = str(tmp_path / "fleet.json")
        self.env = {**os.environ, **(env or {})}
        self.sites: dict[str, subprocess.Popen] = {}
        self.scheduler = self._start(
            ["scheduler", "--port", "0", "--host", "127.0.0.1", "--scheduler-file", self.scheduler_file], "scheduler"
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self.scheduler_file):
            assert self.scheduler.poll() is None, "the scheduler exited at start"
            assert time.monotonic() < deadline, "the scheduler did not write its file in 30s"
            time.sleep(0.05)

    def _start(self, args, name, env=None) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "wb")
        return subprocess.Popen(
            [sys.executable, "-m", "jupyter_edge.cli", *args], stdout=log, stderr=subprocess.STDOUT, env=env or self.env
        )

    def add_site(self, name, *flags, env=None) -> subprocess.Popen:
        env = {**self.env, **(env or {})}
        proc = self._start(
            ["worker", "--scheduler-file", self.scheduler_file, "--name", name, "--host", "127.0.0.1", *flags],
            name,
            env,
        )
        self.sites[name] = proc
        return proc

    def log(self, name) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def connect(self, count: int) -> Fleet:
        fleet = Fleet.connect(scheduler_file=self.scheduler_file)
        fleet.wait_for_sites(count, timeout=60)
        return fleet

    def close(self) -> None:
        for proc in [*self.sites.values(), self.scheduler]:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in [*self.sites.values(), self.scheduler]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def worker_usage(*flags, env: dict | None = None) -> subprocess.CompletedProcess:
    """``jupyter-edge worker FLAGS`` aimed at a scheduler nobody listens at: for flags
    that must be refused before the site dials anything (a usage error, exit 2)."""
    return subprocess.run(
        [sys.executable, "-m", "jupyter_edge.cli", "worker", "tcp://127.0.0.1:9", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def cli_fleet(tmp_path):
    fleets = []

    def start(env=None) -> CliFleet:
        fleets.append(CliFleet(tmp_path, env))
        return fleets[-1]

    yield start
    for f in fleets:
        f.close()


# --- a real kernel ------------------------------------------------------------


def kernel_outputs(kc, msg_id: str, timeout: float = 60) -> tuple[list[dict], str]:
    """The outputs of the execution ``msg_id`` until the kernel is idle again, and
    its reply's status ("ok" or "error")."""
    outputs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] in ("stream", "error", "display_data", "execute_result"):
            outputs.append(msg)
    # The reply to this execution, not any shell message: a kernel slow to start
    # answers more than one of the kernel_info requests jupyter_client's
    # wait_for_ready() sends (one a second), and those extra replies wait on the
    # shell channel. Taking the next message took them for this cell's reply
    # (status "ok") under load.
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return outputs, reply["content"]["status"]


def run_in_kernel(kc, code: str, timeout: float = 60) -> tuple[list[dict], str]:
    """Execute ``code`` in the kernel; its outputs and the reply's status."""
    return kernel_outputs(kc, kc.execute(code), timeout)


def stream_text(outputs: list[dict], name: str | None = None) -> str:
    """What ``outputs`` printed: stdout and stderr, or only the stream ``name``."""
    return "".join(
        m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and name in (None, m["content"]["name"])
    )
