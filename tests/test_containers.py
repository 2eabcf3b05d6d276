"""Container executions against a real dockerd started here, with an image built
locally: cells and commands at two sites with their own datasets mounted
read-only, no network by default, CPU and memory limits seen from inside,
timeouts that stop and remove the container, missing images, placement, and no
container left behind."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time

import pytest
from browser import (  # the two fixtures replace pytest-jupyter's for this module
    Lab,
    jp_asyncio_loop,  # noqa: F401
    jp_server_cleanup,  # noqa: F401
    launch_chromium,
    open_lab,
    require_browser,
)
from conftest import kernel_outputs, run_in_kernel, stream_text
from distributed import Client
from dockerd import IMAGE
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from test_cells import VALUE_CASES

from jupyter_edge import Fleet, PlacementError
from jupyter_edge.container_value import ContainerValue
from jupyter_edge.local import SiteSpec, local_cluster
from jupyter_edge.magics.display import EdgeCellError
from jupyter_edge.site.dataset import DatasetDeclaration

pytestmark = pytest.mark.timeout(300)

DOCKER_SITES = ["berlin", "paris"]


@pytest.fixture(scope="module")
def docker_fleet(engine, tmp_path_factory):
    """berlin and paris run containers, each with its own sensors shard (and
    berlin an S3 dataset); tokyo does not."""
    root = tmp_path_factory.mktemp("container-sites")
    sites = []
    for name in DOCKER_SITES:
        folder = root / name / "sensors"
        folder.mkdir(parents=True)
        (folder / f"{name}.csv").write_text(f"site,value\n{name},1\n")
        datasets = [DatasetDeclaration("sensors", str(folder), name)]
        if name == "berlin":
            datasets.append(DatasetDeclaration("archive", "s3://edge-archive/berlin/", name))
        sites.append(SiteSpec(name, {"region": "eu"}, datasets=datasets, docker=engine.url))
    sites.append(SiteSpec("tokyo", {"region": "ap"}))
    cluster = local_cluster(sites)
    fleet = Fleet(Client(cluster, set_as_default=False))
    fleet.wait_for_sites(len(sites), timeout=60)
    fleet.edge_root = root
    yield fleet
    fleet.close()
    cluster.close()
    assert engine.containers() == [], "containers were left behind after the fleet stopped"


def wait_no_containers(engine, timeout: float = 30, **labels) -> None:
    deadline = time.monotonic() + timeout
    while engine.containers(**labels):
        assert time.monotonic() < deadline, f"containers still there after {timeout}s: {engine.containers(**labels)}"
        time.sleep(0.2)


def test_the_runner_uses_only_the_standard_library():
    """The files mounted into a container import the standard library and each other only."""
    from jupyter_edge.site import containers

    mounted = {os.path.splitext(os.path.basename(path))[0] for path in (containers.RUNNER_PATH, containers.CELL_PATH)}
    for source in (containers.RUNNER_SOURCE, containers.CELL_SOURCE):
        with open(source) as f:
            tree = ast.parse(f.read())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        allowed = set(sys.stdlib_module_names) | mounted
        assert imported and imported <= allowed, f"{source} imports {imported - allowed}"


def test_sites_report_their_engine_and_the_reserved_label(docker_fleet):
    catalog = docker_fleet.catalog(fresh=True)
    for name in DOCKER_SITES:
        site = catalog.sites[name]
        assert site.labels["edge.executor"] == "python,docker"
        assert site.containers["engine"] == "docker" and IMAGE in site.containers["images"]
    assert catalog.sites["tokyo"].labels["edge.executor"] == "python" and catalog.sites["tokyo"].containers is None


def test_container_work_goes_only_where_containers_run(docker_fleet):
    with pytest.raises(PlacementError, match=r"tokyo.*runs no docker containers"):
        docker_fleet.run_cell("1", image=IMAGE, sites=["tokyo"])
    result = docker_fleet.run_cell("site.name", image=IMAGE, all=True, timeout=120)
    assert dict(result) == {"berlin": "berlin", "paris": "paris"}


def test_a_cell_reads_its_own_shard_mounted_read_only(docker_fleet):
    source = (
        "import os\n"
        "print('at', os.environ['EDGE_DATASET_PATH'])\n"
        "{'files': dataset.files(), 'path': dataset.path, 'rows': open(dataset.path + '/' + dataset.files()[0]).read()}"
    )
    result = docker_fleet.run_cell(source, data="sensors", image=IMAGE, timeout=120)
    assert result.ok, result.errors
    for name in DOCKER_SITES:
        assert result[name] == {"files": [f"{name}.csv"], "path": "/data/sensors", "rows": f"site,value\n{name},1\n"}
        assert result.outputs[name] == [{"name": "stdout", "text": "at /data/sensors\n"}]

    written = docker_fleet.run_cell(
        "open(dataset.path + '/new.csv', 'w').write('x')", data="sensors", image=IMAGE, timeout=120
    )
    for name in DOCKER_SITES:
        assert "Read-only file system" in written.errors[name].args[2], written.errors[name]
        assert sorted(os.listdir(docker_fleet.edge_root / name / "sensors")) == [f"{name}.csv"]


def test_values_that_are_not_json_come_back_as_their_display_forms(docker_fleet):
    source = (
        "class Table:\n"
        "    def __repr__(self): return 'Table(2 rows)'\n"
        "    def _repr_html_(self): return '<table><tr><td>2 rows</td></tr></table>'\n"
        "Table()"
    )
    result = docker_fleet.run_cell(source, sites=["berlin"], image=IMAGE, timeout=120)
    value = result["berlin"]
    assert isinstance(value, ContainerValue) and repr(value) == "Table(2 rows)"
    assert value._repr_html_() == "<table><tr><td>2 rows</td></tr></table>"
    failed = docker_fleet.run_cell("1 / 0", sites=["berlin"], image=IMAGE, timeout=120)
    error = failed.errors["berlin"].args[2]
    assert "ZeroDivisionError" in error and 'File "<edge-cell>", line 1' in error and "container_runner" not in error


def test_a_command_streams_its_output_and_its_exit_code_is_the_result(docker_fleet):
    ok = docker_fleet.run_command(
        ["sh", "-c", 'ls "$EDGE_DATASET_PATH"; echo warn >&2'], data="sensors", image=IMAGE, timeout=120
    )
    assert dict(ok) == {"berlin": 0, "paris": 0}
    for name in DOCKER_SITES:
        assert {"name": "stdout", "text": f"{name}.csv\n"} in ok.outputs[name]
        assert {"name": "stderr", "text": "warn\n"} in ok.outputs[name]
    failed = docker_fleet.run_command(["sh", "-c", "exit 3"], sites=["paris"], image=IMAGE, timeout=120)
    assert failed.executions["paris"].state == "failed"
    assert "exited with code 3" in failed.errors["paris"].args[2]


def test_run_command_follows_its_job_in_one_thread_only(docker_fleet):
    """``run_command`` waits on its job here; a second supervising thread would
    count the executions out of flight twice (replica choice then sees negative
    load) and collect the results twice."""
    seen = {}

    def on_start(job):
        seen["job"] = job
        seen["supervisors"] = [t.name for t in threading.enumerate() if t.name == f"edge-job-{job.id}"]

    result = docker_fleet.run_command(
        ["sh", "-c", "sleep 0.5"], data="sensors", image=IMAGE, timeout=120, on_start=on_start
    )
    assert dict(result) == {"berlin": 0, "paris": 0}
    assert seen["supervisors"] == [], f"run_command also started a supervising thread: {seen['supervisors']}"
    in_flight = {site: n for site, n in docker_fleet._running.items() if n}
    assert in_flight == {}, f"after the job, no execution should be in flight; the counts are {in_flight}"


@pytest.mark.parametrize(("source", "value"), VALUE_CASES)
def test_a_container_cell_has_the_value_a_runner_cell_has(docker_fleet, source, value):
    res = docker_fleet.run_cell(source, sites=["berlin"], image=IMAGE, timeout=120)
    assert dict(res) == {"berlin": value}, f"in a container, the cell {source!r} should have the value {value!r}"


def test_no_network_unless_asked(docker_fleet):
    interfaces = "import os\nsorted(os.listdir('/sys/class/net'))"
    closed = docker_fleet.run_cell(interfaces, sites=["berlin"], image=IMAGE, timeout=120)
    assert closed["berlin"] == ["lo"]
    opened = docker_fleet.run_cell(interfaces, sites=["berlin"], image=IMAGE, network="host", timeout=120)
    assert len(opened["berlin"]) > 1, opened["berlin"]


def test_cpu_and_memory_limits_apply_inside(docker_fleet):
    source = (
        "import os\n"
        "def read(*paths):\n"
        "    for p in paths:\n"
        "        if os.path.exists(p): return open(p).read().split()\n"
        "cpu = read('/sys/fs/cgroup/cpu.max') or read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') + "
        "read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')\n"
        "mem = read('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')\n"
        "(int(cpu[0]) / int(cpu[1]), int(mem[0]))"
    )
    result = docker_fleet.run_cell(source, sites=["paris"], image=IMAGE, cpus=0.5, memory="96MiB", timeout=120)
    assert result["paris"] == [0.5, 96 * 2**20], result["paris"]


def test_a_timeout_stops_and_removes_the_container(docker_fleet, engine):
    result = docker_fleet.run_cell("import time\ntime.sleep(120)", sites=["berlin"], image=IMAGE, timeout=3)
    assert result.executions["berlin"].state == "timed-out"
    wait_no_containers(engine, timeout=30, **{"jupyter-edge.job": result.job})


def test_a_cancel_stops_and_removes_the_container(docker_fleet, engine):
    job = docker_fleet.submit_command(["sleep", "120"], sites=["paris"], image=IMAGE, timeout=120)
    deadline = time.monotonic() + 60
    while not engine.containers(**{"jupyter-edge.job": job.id}):
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.1)
    job.cancel()
    assert job.wait(30), "the job did not end after its cancel"
    assert job.executions[0].state == "cancelled"
    wait_no_containers(engine, timeout=30, **{"jupyter-edge.job": job.id})


def test_a_kernel_interrupt_stops_and_removes_the_containers(docker_fleet, engine):
    """Interrupting the kernel of a notebook whose cell runs in containers ends
    every execution cancelled, with no container left, and the kernel goes on."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        _, status = run_in_kernel(kc, f"%load_ext jupyter_edge\n%edge connect {docker_fleet.address}")
        assert status == "ok"
        msg_id = kc.execute(f"%edge run --data sensors --image {IMAGE} -o stopped -- sleep 300")
        deadline = time.monotonic() + 60
        while len(engine.containers()) < len(DOCKER_SITES):
            assert time.monotonic() < deadline, f"the containers never started: {engine.containers()}"
            time.sleep(0.1)
        km.interrupt_kernel()
        outputs, status = kernel_outputs(kc, msg_id, timeout=60)
        assert status == "error" and any(
            m["msg_type"] == "error" and m["content"]["ename"] == "JobInterrupted" for m in outputs
        ), outputs
        wait_no_containers(engine, timeout=30)
        outputs, _ = run_in_kernel(kc, "print(sorted({ex.state.value for ex in stopped.executions.values()}))")
        said = stream_text(outputs)
        assert said.strip() == "['cancelled']", f"expected every execution cancelled; the kernel said {said!r}"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_missing_image_fails_that_execution_clearly(docker_fleet):
    result = docker_fleet.run_cell("1", sites=["berlin"], image="edge-missing:9", timeout=120)
    message = result.errors["berlin"].args[2]
    assert "image 'edge-missing:9' is not at site berlin" in message and IMAGE in message and "--pull" in message
    pulled = docker_fleet.run_cell("1", sites=["berlin"], image="edge-missing:9", pull=True, timeout=120)
    assert "pulling it failed" in pulled.errors["berlin"].args[2]  # no registry is reachable here


def test_an_s3_dataset_is_not_mounted(docker_fleet):
    result = docker_fleet.run_cell("1", data="archive", image=IMAGE, timeout=120)
    message = result.errors["berlin"].args[2]
    assert "cannot be mounted into a container: add --network" in message


def test_bad_container_options_fail_before_anything_is_sent(docker_fleet):
    for options, expected in (
        ({"cpus": 0}, "cpus must be"),
        ({"memory": "lots"}, "memory must be"),
        ({"memory": 1024}, "at least 6 MiB"),
    ):
        with pytest.raises(ValueError, match=expected):
            docker_fleet.run_cell("1", sites=["berlin"], image=IMAGE, **options)
    with pytest.raises(ValueError, match="apply only to containers"):
        docker_fleet.run_cell("1", sites=["berlin"], cpus=1)
    with pytest.raises(ValueError, match="command must be"):
        docker_fleet.run_command("ls -l", sites=["berlin"], image=IMAGE)


def test_the_magics_run_cells_and_commands_in_containers(docker_fleet, ipshell):
    ip = ipshell
    ip.run_line_magic("load_ext", "jupyter_edge")
    with capture_output():
        ip.run_line_magic("edge", f"connect {docker_fleet.address}")
    try:
        with capture_output() as out:
            ip.run_cell_magic("edge", f"--data sensors --image {IMAGE} -o res", "print(len(dataset.files()))\n7")
        assert "[stdout:berlin] 1" in out.stdout and "[stdout:paris] 1" in out.stdout, out.stdout
        assert dict(ip.user_ns["res"]) == {"berlin": 7, "paris": 7}
        with capture_output() as out:
            ip.run_line_magic("edge", f"run --data sensors --image {IMAGE} -o codes -- sh -c 'ls $EDGE_DATASET_PATH'")
        assert "[stdout:berlin] berlin.csv" in out.stdout and "[stdout:paris] paris.csv" in out.stdout, out.stdout
        assert dict(ip.user_ns["codes"]) == {"berlin": 0, "paris": 0}
        with capture_output(), pytest.raises(EdgeCellError, match="paris"):
            ip.run_line_magic("edge", f"run --sites paris --image {IMAGE} -- false")
        with pytest.raises(UsageError, match="apply only to containers: add --image"):
            ip.run_cell_magic("edge", "--sites berlin --cpus 1", "1")
        with pytest.raises(UsageError, match="needs the command after --"):
            ip.run_line_magic("edge", f"run --sites berlin --image {IMAGE} ls")
    finally:
        ip.run_line_magic("edge", "disconnect")


def test_the_sidebar_shows_which_sites_run_containers(docker_fleet, tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    lab = Lab(tmp_path / "lab", docker_fleet.address)
    try:
        with sync_playwright() as playwright:
            context = launch_chromium(playwright, tmp_path / "profile")
            try:
                page = open_lab(context, lab)
                page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 3")
                for name in DOCKER_SITES:
                    badge = page.locator(f".jp-EdgeSite[data-site='{name}'] .jp-EdgeBadge-containers")
                    assert badge.inner_text().startswith("containers: docker"), badge.inner_text()
                assert page.locator(".jp-EdgeSite[data-site='tokyo'] .jp-EdgeBadge-containers").count() == 0
                page.locator(".jp-EdgeSites-filter input").fill("containers")
                page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 2")
            finally:
                context.close()
    finally:
        lab.close()


def test_a_site_sweeps_its_own_leftovers_at_start(engine, tmp_path):
    engine.client.containers.create(IMAGE, ["sleep", "600"], labels={"jupyter-edge.site": "lyon"})
    engine.client.containers.create(IMAGE, ["true"], labels={"jupyter-edge.site": "someone-else"})
    cluster = local_cluster([SiteSpec("lyon", docker=engine.url)])
    try:
        with Fleet(Client(cluster, set_as_default=False)) as fleet:
            fleet.wait_for_sites(1, timeout=60)
            assert engine.containers(**{"jupyter-edge.site": "lyon"}) == []
            assert len(engine.containers(**{"jupyter-edge.site": "someone-else"})) == 1, "another site's were kept"
    finally:
        cluster.close()
        for container in engine.containers(**{"jupyter-edge.site": "someone-else"}):
            container.remove(force=True)


def test_a_policy_refuses_images_it_does_not_list(engine):
    from jupyter_edge.site.policy import Policy

    policy = Policy.from_dict({"cells": False, "images": ["edge-approved:1"]})
    cluster = local_cluster([SiteSpec("clinic", docker=engine.url, policy=policy)])
    try:
        with Fleet(Client(cluster, set_as_default=False)) as fleet:
            fleet.wait_for_sites(1, timeout=60)
            result = fleet.run_command(["true"], sites=["clinic"], image=IMAGE, timeout=60)
            error = result.errors["clinic"].args[2]
            assert f"rule images: image '{IMAGE}' is not allowed here; allowed: edge-approved:1" in error, error
            assert engine.containers(**{"jupyter-edge.job": result.job}) == []
            cell = fleet.run_cell("1", sites=["clinic"], timeout=60)
            assert "rule cells" in cell.errors["clinic"].args[2]
    finally:
        cluster.close()


def test_a_cli_site_with_docker_runs_containers(engine, cli_fleet, tmp_path):
    """``jupyter-edge worker --docker URL`` as an operator starts it: the site
    reports the engine and runs a command in a container at its own dataset."""
    fleet_processes = cli_fleet()
    folder = tmp_path / "lyon" / "sensors"
    folder.mkdir(parents=True)
    (folder / "lyon.csv").write_text("site,value\nlyon,1\n")
    fleet_processes.add_site("lyon", "--dataset", f"sensors={folder}", "--docker", engine.url)
    with fleet_processes.connect(1) as fleet:
        site = fleet.catalog(fresh=True).sites["lyon"]
        assert site.containers and IMAGE in site.containers["images"], (
            f"expected lyon to report its engine and images; it reports {site.containers}"
        )
        assert site.labels["edge.executor"] == "python,docker"
        result = fleet.run_command(["sh", "-c", 'ls "$EDGE_DATASET_PATH"'], data="sensors", image=IMAGE, timeout=60)
        assert dict(result) == {"lyon": 0}, f"expected the command to run at lyon: {result.errors}"
        assert {"name": "stdout", "text": "lyon.csv\n"} in result.outputs["lyon"], result.outputs["lyon"]
    assert "containers through docker" in fleet_processes.log("lyon")
    wait_no_containers(engine)


def test_a_worker_without_an_engine_says_so(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "worker",
            "tcp://127.0.0.1:9",
            "--name",
            "x",
            "--docker",
            f"unix://{tmp_path}/no.sock",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no container engine at unix://" in done.stderr, done.stderr
