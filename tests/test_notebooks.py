"""The example notebooks in notebooks/ run top to bottom on the demo fleet, as a
user runs them: ``jupyter-edge demo`` in a subprocess (S3 included), a real
kernel through nbclient that finds the fleet in ``$JUPYTER_EDGE_SCHEDULER``.
The assertions read what each notebook showed, not only that it ran."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from venvs import Venv

from jupyter_edge import Fleet
from jupyter_edge.demo import _S3_KEY, _S3_SECRET
from jupyter_edge.site.gpu import discover_gpus

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
#: The kernel the notebooks run in: the demo command's environment (``demo_env``).
DEMO_KERNEL = "jupyter-edge-demo-env"
SITES = ["berlin", "boston", "paris", "tokyo"]
#: What the kernel must not inherit from the test process: credentials would
#: make the S3 notebook's "no credentials here" untrue, MPLBACKEND would hide its plots.
_SCRUBBED = (
    "MPLBACKEND",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory) -> Venv:
    """The environment the README's demo command makes: a new venv, then
    ``pip install -e ".[lab,demo]"``. The demo and the notebooks' kernels run
    there, not in the tests' own environment, so a package that only the tests
    install cannot make a notebook pass."""
    venv = Venv(tmp_path_factory.mktemp("demo-env"))
    venv.run(str(venv.bin / "pip"), "install", "-e", f"{REPO}[lab,demo]", cwd=REPO)
    spec = venv.root / "jupyter-data" / "kernels" / DEMO_KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [venv.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (the demo command's environment)",
                "language": "python",
                "env": {"PATH": venv.env["PATH"], "VIRTUAL_ENV": str(venv.path), "PYTHONNOUSERSITE": "1"},
            }
        )
    )
    return venv


@pytest.fixture(scope="module")
def demo_address(demo_env, tmp_path_factory):
    """``jupyter-edge demo`` as a user starts it (four sites, S3 through moto), until the module ends."""
    root = tmp_path_factory.mktemp("demo")
    scheduler_file = root / "scheduler.json"
    log_path = root / "demo.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(demo_env.bin / "jupyter-edge"),
                "demo",
                "--port",
                "0",
                "--data-dir",
                str(root / "data"),
                "--scheduler-file",
                str(scheduler_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=demo_env.env,
        )

    def said() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + 60
        while True:  # the file is written at once, but check that it parses
            assert proc.poll() is None, f"the demo exited at start (rc {proc.returncode}):\n{said()}"
            assert time.monotonic() < deadline, f"the demo wrote no scheduler file in 60 s:\n{said()}"
            try:
                address = json.loads(scheduler_file.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        with Fleet.connect(scheduler_file=str(scheduler_file)) as fleet:
            names = sorted(s.name for s in fleet.wait_for_sites(4, timeout=60))
            assert names == SITES, f"the demo should have sites {SITES}, has {names}"
            archive = fleet.datasets().get("archive")
            assert archive is not None and archive.kind == "s3", (
                f"the demo should hold the S3 dataset 'archive' (is moto installed?):\n{said()}"
            )
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- reading a notebook's outputs ----------------------------------------------------


def cell_text(cell) -> str:
    """Every text output of a cell: streams, text/plain and text/html, tracebacks."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
        else:
            data = output.get("data", {})
            parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


def failed_cells(nb) -> list[int]:
    """Cells that show an error without being tagged to raise one."""
    return [
        i
        for i, c in enumerate(nb.cells)
        for o in c.get("outputs", [])
        if o.output_type == "error" and "raises-exception" not in c.metadata.get("tags", [])
    ]


def all_text(nb) -> str:
    return "\n".join(cell_text(cell) for cell in nb.cells)


def cell_with(nb, line: str, exact: bool = False):
    """The code cell one of whose lines starts with ``line`` (or is ``line``, if ``exact``)."""
    found = [
        c
        for c in nb.cells
        if c.cell_type == "code"
        and any(
            source_line == line or (not exact and source_line.startswith(line)) for source_line in c.source.splitlines()
        )
    ]
    assert len(found) == 1, f"expected one code cell with the line {line!r}, found {len(found)}"
    return found[0]


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def excerpt(text: str) -> str:
    """The outputs' text for a failure message, without the HTML renderings."""
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("<")]
    return "\n".join(lines)[-5000:]


def expect(text: str, needle: str, why: str) -> None:
    assert needle in text, f"{why}: expected {needle!r} in the outputs, which were:\n{excerpt(text)}"


def expect_not(text: str, needle: str, why: str) -> None:
    assert needle not in text, f"{why}: expected no {needle!r} in the outputs, which were:\n{excerpt(text)}"


def search(text: str, pattern: str, why: str) -> re.Match:
    found = re.search(pattern, text)
    assert found, f"{why}: expected a match for {pattern!r} in the outputs, which were:\n{excerpt(text)}"
    return found


def number(text: str) -> int:
    return int(text.replace(",", ""))


# --- what each notebook must show ----------------------------------------------------


def check_quickstart(nb, text: str) -> None:
    expect(text, "4 site(s)", "%edge connect should find the demo's four sites")
    expect(
        cell_text(cell_with(nb, "%edge fleet")),
        "1 x NVIDIA T4 (nvidia, 17.2 GB, declared)",
        "%edge fleet should show boston's GPU: vendor, model, memory, and that it was declared",
    )
    search(
        cell_text(cell_with(nb, "%edge datasets")),
        r"archive\s+s3",
        "%edge datasets should list the S3 dataset 'archive'",
    )
    first = cell_with(nb, "%%edge --data sensors", exact=True)
    said = cell_text(first)
    for site in SITES:
        expect(said, f"[stdout:{site}] {site} (", f"the first %%edge cell should print at {site}, labelled")
        expect(said, f"Out[{site}]:", f"the first %%edge cell should show {site}'s value")
    shown = sorted(
        o.metadata["jupyter_edge"]["site"]
        for o in first.outputs
        if o.output_type == "display_data" and "jupyter_edge" in o.get("metadata", {})
    )
    assert shown == SITES, f"expected one value displayed per site, marked with its site, got {shown}"
    expect(said, "4 ok", "the closing line should count four sites ok")
    expect(said, "of data stayed at the sites", "the closing line should say what stayed at the sites")
    expect(text, f"one row per site: 4 rows for sites {SITES}", "to_frame() should give one row per site")
    expect(text, "all sites ok: True", "the -o JobResult should be ok")
    assert images(nb) >= 1, "the quickstart should plot the per-site summary"


def check_log_analytics(nb, text: str) -> None:
    for site in SITES:
        expect(text, f"[stdout:{site}] 1,800 lines read here;", f"{site} should parse its own logs at the edge")
    same = search(
        text,
        r"same bursts both ways: (\w+) \((\d+) windows at (\d+) sites\)",
        "the notebook should compare the bursts found both ways",
    )
    assert same.group(1) == "True", f"expected the same bursts at the edge and pulled, got: {same.group(0)}"
    assert int(same.group(2)) > 0 and same.group(3) == "4", (
        f"expected bursts found at all 4 sites, got: {same.group(0)}"
    )
    moved = search(
        text,
        r"bytes moved: at the edge ([\d,]+), pulled ([\d,]+)",
        "the notebook should report the bytes moved both ways",
    )
    at_edge, pulled = number(moved.group(1)), number(moved.group(2))
    logs = search(text, r"the logs: ([\d,]+) bytes at the sites", "the notebook should say how big the logs are")
    logs = number(logs.group(1))
    assert pulled >= logs, f"pulling should move at least the whole logs ({logs:,} B), moved {pulled:,} B"
    assert pulled > 20 * at_edge, (
        f"the edge should move far fewer bytes than pulling: {at_edge:,} B at the edge, {pulled:,} B pulled"
    )
    assert images(nb) >= 2, "expected the bursts timeline and the comparison bar plot"


def expected_device_line() -> str:
    """What the GPU cell must say at boston, on this machine (the demo's GPU is declared by hand)."""
    found = [g for g in discover_gpus("auto").gpus if g.source == "nvml"]
    if not found:
        return "no NVIDIA GPU here that NVML sees: running on the CPU with numpy"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return f"a physical GPU is here ({found[0].model}) but cupy is not installed"
    return f"running on the GPU ({found[0].model}) with cupy"


def check_gpu_inference(nb, text: str) -> None:
    inference = cell_text(cell_with(nb, 'print(f"{site.name}: this cell holds GPU'))
    expect(inference, f"[stdout:boston] {expected_device_line()}", "boston should say where the model runs")
    expect(inference, "[stdout:boston] scored 4,000 readings", "boston should score its shard")
    for site in ("berlin", "paris", "tokyo"):
        for mark in (f"[stdout:{site}]", f"Out[{site}]"):
            expect_not(inference, mark, f"only boston has a GPU; {site} must not run the inference")
    expect(text, "ran at: ['boston']", "the JobResult should hold boston only")
    expect(text, "PlacementError after", "asking for 4 GPUs from Python should raise PlacementError")
    expect(text, "none matches 4 GPUs: berlin (0 GPUs), boston (1 GPU)", "the placement error should say why")
    expect(
        text,
        "no site matches edge.gpu.memory>=80GiB and 1 GPU: berlin (no edge.gpu.memory), "
        "boston (edge.gpu.memory=16.00 GiB)",
        "asking for more GPU memory than any site has should say what each has",
    )
    expect(
        cell_text(cell_with(nb, "%%edge --data sensors --gpus 4")),
        "UsageError: 4 sites hold 'sensors'",
        "the %%edge cell asking for 4 GPUs should stop with the placement error",
    )
    assert images(nb) >= 2, "expected the training loss and the scores plots"


def check_s3(nb, text: str) -> None:
    search(text, r"archive\s+s3", "%edge datasets should show archive's kind, s3")
    for site in ("boston", "tokyo"):
        expect(
            text,
            f"[stdout:{site}] {site}: s3 shard at s3://edge-archive/{site}, read through S3FileSystem",
            f"{site} should read its archive shard from S3",
        )
        expect(text, f"Out[{site}]:", f"{site}'s yearly summary should come back")
    expect(text, "read at: ['boston', 'tokyo']", "archive should be read at boston and tokyo only")
    expect(text, "credential-like fields in the catalog: none", "the catalog must hold no credentials")
    expect(
        text,
        "AWS credential variables in this notebook's environment: none",
        "the notebook's process must hold no AWS credentials",
    )
    for secret in (_S3_KEY, _S3_SECRET):
        expect_not(text, secret, "the demo's S3 credentials must never reach the notebook")
        expect_not(json.dumps(nb), secret, "the demo's S3 credentials must appear nowhere in the notebook")
    assert images(nb) >= 1, "expected the yearly totals plot"


def check_python_api(nb, text: str) -> None:
    expect(text, "where='region=eu'                -> ['berlin', 'paris']", "where= should pick the EU sites")
    expect(text, "where='region in (us,ap)'        -> ['boston', 'tokyo']", "a set selector should work")
    expect(text, "gpus=1 -> {'boston'", "gpus=1 should run at boston only")
    expect(text, "right after submit: running", "submit should return while the job runs")
    expect(text, "finished within 30 s: True", "job.wait should see the job finish")
    expect(text, "ok: False", "a job with a failed site is not ok")
    expect(
        text,
        "error at paris: [paris] failed: RuntimeError: paris: sensor bus down",
        "res.errors should say what failed where",
    )
    expect(text, "JobError: job", "raise_for_errors should raise JobError")
    expect(text, "{'berlin': 'done', 'paris': 'timed-out'}", "a timeout should stop the slow site and keep the fast")
    expect(
        text,
        "PlacementError: no dataset named 'sensros'; did you mean 'sensors'?",
        "a misspelt dataset should be a PlacementError with a suggestion",
    )
    expect(
        text,
        "PlacementError: 2 sites hold 'archive', none matches region=eu",
        "a selector no holder matches should be a PlacementError",
    )
    expect(text, "PlacementError: no site has 2 GPUs", "too many GPUs should be a PlacementError")
    expect(text, "PlacementError: no target", "a request without a target should be a PlacementError")
    assert images(nb) >= 1, "expected the job timeline plot"


def check_wasm(nb, text: str) -> None:
    fleet = cell_text(cell_with(nb, "%edge fleet"))
    expect(fleet, "edge.executor=python,wasm", "the sites should say they run modules")
    for site in ("berlin", "paris", "boston", "tokyo"):
        # Every demo log file has 600 lines: three of them per site.
        expect(text, f"[stdout:{site}] 2026-11-01.log 600 ", f"{site} should count its first log file's lines")
        expect(text, f"[stdout:{site}] total 1800 ", f"{site} should print its shard's total")
        expect(text, f"{site}: exit code 0, total 1800 ", f"run_wasm should count WARN lines at {site}")
    expect(text, "exit codes: {'berlin': 0, 'boston': 0, 'paris': 0, 'tokyo': 0}", "every module should exit 0")
    search(text, r"after \d+\.\d s: \[berlin\] timed-out", "the endless module should be stopped by the timeout")
    expect(text, "berlin's next module: exit code 0", "berlin should take the next module at once")


CHECKS = {
    "01-quickstart.ipynb": check_quickstart,
    "02-edge-log-analytics.ipynb": check_log_analytics,
    "03-gpu-inference.ipynb": check_gpu_inference,
    "04-s3-sites.ipynb": check_s3,
    "05-python-api.ipynb": check_python_api,
    "06-wasm.ipynb": check_wasm,
}


# --- the tests -------------------------------------------------------------------------


def test_every_notebook_is_checked():
    found = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(CHECKS), (
        f"expected exactly the notebooks {sorted(CHECKS)} (each with its checks), found {found}"
    )


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_is_saved_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4, f"{name}: expected nbformat 4, got {nb.nbformat}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{name}: expected kernelspec python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: expected no outputs and no execution counts, cells {dirty} have some"
    assert nb.cells[0].cell_type == "markdown", f"{name}: expected a markdown introduction first"
    assert code[0].source.splitlines() == ["%load_ext jupyter_edge", "%edge connect"], (
        f"{name}: expected the first code cell to be `%load_ext jupyter_edge` then `%edge connect`"
    )
    sources = "\n".join(c.source for c in nb.cells)
    for downloading in ("pip install", "urlopen", "urlretrieve", "requests.", "wget ", "curl ", "http://", "https://"):
        assert downloading not in sources, f"{name}: expected nothing downloaded at run time, found {downloading!r}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_on_the_demo_fleet(name, demo_env, demo_address, tmp_path, monkeypatch):
    """Each notebook, top to bottom, in a kernel of the demo command's environment."""
    monkeypatch.setenv("JUPYTER_EDGE_SCHEDULER", demo_address)
    monkeypatch.setenv("JUPYTER_PATH", str(demo_env.root / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    for variable in _SCRUBBED:
        monkeypatch.delenv(variable, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name=DEMO_KERNEL, resources={"metadata": {"path": str(work)}}).execute()
    assert not failed_cells(nb), f"{name}: cells {failed_cells(nb)} failed"
    CHECKS[name](nb, all_text(nb))
