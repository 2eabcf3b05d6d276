"""A TLS fleet end to end: certificates from `jupyter-edge certs create`, a
scheduler and two sites started by the CLI with --tls-dir, clients that connect
with their own certificates, owners taken from certificates, cancels refused to
anyone but the owner; and a plain-TCP site and a client of another CA refused
with clear messages."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import write_sensors

from jupyter_edge import Fleet, certs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jupyter_edge.cli", *args], **kwargs)


@pytest.fixture(scope="module")
def tls_fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    made = certs.create(root / "pki", sites=["berlin", "paris"], clients=["ana", "bob"])
    other = certs.create(root / "other-pki", sites=["rogue"], clients=["mallory"])
    scheduler_file = root / "scheduler.json"
    logs = {}

    def start(name, *args):
        logs[name] = root / f"{name}.log"
        return cli(*args, stdout=open(logs[name], "wb"), stderr=subprocess.STDOUT)

    procs = [
        start(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--scheduler-file",
            str(scheduler_file),
            "--tls-dir",
            str(made["scheduler"]),
        )
    ]
    deadline = time.monotonic() + 30
    while not scheduler_file.exists():
        assert time.monotonic() < deadline, f"no TLS scheduler: {logs['scheduler'].read_text()}"
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    for name in ("berlin", "paris"):
        data = write_sensors(root / name / "sensors", name)
        procs.append(
            start(
                name,
                "worker",
                address,
                "--name",
                name,
                "--host",
                "127.0.0.1",
                "--dataset",
                f"sensors={data}",
                "--tls-dir",
                str(made[f"site-{name}"]),
            )
        )
    try:
        with Fleet.connect(address, tls_dir=str(made["client-ana"])) as fleet:
            fleet.wait_for_sites(2, timeout=60)
        yield {"address": address, "made": made, "other": other, "root": root, "logs": logs}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def test_address_and_clients_over_tls(tls_fleet):
    assert tls_fleet["address"].startswith("tls://")
    with Fleet.connect(tls_fleet["address"], tls_dir=str(tls_fleet["made"]["client-ana"])) as fleet:
        assert fleet.identity == "ana"
        result = fleet.run(lambda dataset, site: (site.name, len(dataset.read_parquet())), data="sensors", timeout=60)
        assert dict(result) == {"berlin": ("berlin", 50), "paris": ("paris", 50)}
        assert fleet.job(result.job).owner == "ana"


def test_the_status_command_over_tls(tls_fleet):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "status",
            tls_fleet["address"],
            "--tls-dir",
            str(tls_fleet["made"]["client-bob"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "2 site(s)" in done.stdout, done.stdout + done.stderr


def test_only_the_owner_may_cancel(tls_fleet):
    made = tls_fleet["made"]
    with (
        Fleet.connect(tls_fleet["address"], tls_dir=str(made["client-ana"])) as ana,
        Fleet.connect(tls_fleet["address"], tls_dir=str(made["client-bob"])) as bob,
    ):
        job = ana.submit(lambda: __import__("time").sleep(60), sites=["paris"], timeout=90)
        deadline = time.monotonic() + 30
        while ana.job(job.id).executions[0].state != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        with pytest.raises(PermissionError, match=f"job {job.id} belongs to ana; bob may not cancel it"):
            bob.cancel_job(job.id)
        assert ana.job(job.id).executions[0].state == "running", "bob's refused cancel stopped it anyway"
        assert ana.cancel_job(job.id) == [f"{job.id}.0"]
        assert job.wait(20) and job.executions[0].state == "cancelled"


def test_a_client_that_claims_another_owner_is_refused(tls_fleet):
    """The owner a job records is the certificate's, whatever the client says."""
    with Fleet.connect(tls_fleet["address"], tls_dir=str(tls_fleet["made"]["client-bob"])) as bob:
        bob.identity = "ana"  # a tampered client
        result = bob.run(lambda: __import__("time").sleep(5), sites=["berlin"], timeout=60)
        record = bob.job(result.job)
        assert record.owner == "bob"
        assert record.executions[0].state == "cancelled"
        assert "claims owner 'ana', its certificate says 'bob'" in record.executions[0].error


def test_a_plain_tcp_site_is_refused(tls_fleet, tmp_path):
    plain = tls_fleet["address"].replace("tls://", "tcp://")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_edge.cli", "worker", tls_fleet["address"], "--name", "rogue"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "speaks TLS: give a certificate" in done.stderr, done.stderr
    # A site that talks plain TCP to the TLS port never joins: the scheduler refuses its handshakes.
    assert_site_refused(tls_fleet, tmp_path, plain)


def test_a_site_of_another_ca_is_refused(tls_fleet, tmp_path):
    assert_site_refused(tls_fleet, tmp_path, tls_fleet["address"], "--tls-dir", str(tls_fleet["other"]["site-rogue"]))


def handshakes_refused(tls_fleet) -> int:
    return tls_fleet["logs"]["scheduler"].read_text(errors="replace").count("TLS handshake failed")


def assert_site_refused(tls_fleet, tmp_path, address, *flags) -> None:
    """A site at ``address`` with ``flags`` is refused by the scheduler's TLS, and never joins."""
    before = handshakes_refused(tls_fleet)
    log = tmp_path / "rogue.log"
    rogue = cli(
        "worker",
        address,
        "--name",
        "rogue",
        "--host",
        "127.0.0.1",
        *flags,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while handshakes_refused(tls_fleet) <= before:
            assert rogue.poll() is None, f"the rogue site exited instead of being refused:\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                "expected the scheduler to refuse the rogue site's TLS handshake within 30 s; its log:\n"
                + tls_fleet["logs"]["scheduler"].read_text(errors="replace")[-2000:]
            )
            time.sleep(0.2)
        with Fleet.connect(tls_fleet["address"], tls_dir=str(tls_fleet["made"]["client-ana"])) as fleet:
            assert sorted(s.name for s in fleet.sites()) == ["berlin", "paris"], "the refused site joined"
    finally:
        rogue.terminate()
        rogue.wait(30)


def test_a_client_of_another_ca_is_refused(tls_fleet):
    # Dask's own words for the refused handshake, not just any failure to connect.
    with pytest.raises(OSError, match=r"over TLS: TLS certificate does not match.*signed by the fleet's CA"):
        Fleet.connect(tls_fleet["address"], tls_dir=str(tls_fleet["other"]["client-mallory"]), timeout=5)
    with pytest.raises(ValueError, match="speaks TLS: give a certificate"):
        Fleet.connect(tls_fleet["address"])
    with pytest.raises(ValueError, match="must be tls://"):
        Fleet.connect(tls_fleet["address"].replace("tls://", "tcp://"), tls_dir=str(tls_fleet["made"]["client-ana"]))


def test_certs_create_from_the_cli(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "certs",
            "create",
            str(tmp_path / "pki"),
            "--site",
            "lyon",
            "--client",
            "ana",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for identity, name in (("scheduler", "scheduler"), ("site-lyon", "lyon"), ("client-ana", "ana")):
        folder = tmp_path / "pki" / identity
        assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
        assert certs.common_name((folder / "cert.pem").read_bytes()) == name
        assert (folder / "key.pem").stat().st_mode & 0o077 == 0, "a private key readable by others"


def test_a_notebook_kernel_over_tls(tls_fleet, monkeypatch, tmp_path):
    """A real kernel: %edge connect reads edge.tls.* (here from the environment)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_EDGE_SCHEDULER", tls_fleet["address"])
    monkeypatch.setenv("DASK_EDGE__TLS__DIR", str(tls_fleet["made"]["client-ana"]))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext jupyter_edge\n%edge connect"),
            nbformat.v4.new_code_cell("%%edge --data sensors -o res\nprint('rows', len(dataset.read_parquet()))"),
            nbformat.v4.new_code_cell(
                "from jupyter_edge.magics import connected_fleet\nprint('owner', connected_fleet().job(res.job).owner)"
            ),
        ]
    )
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.outputs)
    assert "connected to tls://" in text and "[stdout:berlin] rows 50" in text and "[stdout:paris] rows 50" in text, (
        text
    )
    assert "owner ana" in text, text


def test_the_server_extension_over_tls_returns_no_credentials(tls_fleet):
    import asyncio

    from jupyter_edge.server.manager import FleetManager

    client = tls_fleet["made"]["client-ana"]
    manager = FleetManager(tls_fleet["address"], tls_dir=str(client))

    async def answers():
        try:
            return [await manager.fleet(), await manager.datasets(), await manager.jobs()]
        finally:
            await manager.close()

    fleet, datasets, jobs = asyncio.run(answers())
    assert fleet["connection"]["status"] == "connected" and {s["name"] for s in fleet["sites"]} == {"berlin", "paris"}
    text = json.dumps([fleet, datasets, jobs])
    secrets = [(folder / "key.pem").read_text().strip().splitlines()[1] for folder in tls_fleet["made"].values()]
    for needle in ["PRIVATE KEY", "key.pem", str(tls_fleet["root"] / "pki"), *secrets]:
        assert needle not in text, f"{needle!r} leaked into the server's answers"
    # A site's environment never leaves it either.
    assert "PATH" not in {k for s in fleet["sites"] for k in s} and "/usr/bin" not in text


def test_the_demo_runs_over_tls(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    demo = cli(
        "demo",
        "--tls",
        "--no-s3",
        "--port",
        "0",
        "--sites",
        "2",
        "--data-dir",
        str(tmp_path / "data"),
        "--scheduler-file",
        str(scheduler_file),
        stdout=open(tmp_path / "demo.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://")
        with Fleet.connect(address, tls_dir=str(tmp_path / "data" / "tls" / "client-notebook")) as fleet:
            fleet.wait_for_sites(2, timeout=60)
            assert fleet.identity == "notebook"
            assert dict(fleet.run(lambda site: site.name, all=True, timeout=60)) == {
                "berlin": "berlin",
                "paris": "paris",
            }
        log = (tmp_path / "demo.log").read_text()
        assert "DASK_EDGE__TLS__DIR=" in log, log
    finally:
        demo.terminate()
        demo.wait(30)
