"""binder/ checked offline, as repo2docker would run it: requirements.txt, then
postBuild, in a fresh virtual environment with a scratch HOME (built once per
test run); then binder/start brings up the demo fleet and the JupyterLab it
wraps, and the sidebar shows the fleet's sites in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import (  # the two fixtures replace pytest-jupyter's for this module
    Lab,
    jp_asyncio_loop,  # noqa: F401
    jp_server_cleanup,  # noqa: F401
    launch_chromium,
    open_lab,
    require_browser,
    require_tool,
)
from test_notebooks import CHECKS, NOTEBOOKS, all_text, failed_cells
from venvs import Venv

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
BINDER = os.path.join(REPO, "binder")
SCRIPTS = [os.path.join(BINDER, name) for name in ("postBuild", "start")]


def test_binder_scripts_pass_shellcheck():
    require_tool("shellcheck", "shellcheck")
    done = subprocess.run(["shellcheck", *SCRIPTS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"shellcheck found problems:\n{done.stdout}{done.stderr}"


def test_binder_files_are_what_repo2docker_reads():
    for name in ("requirements.txt", "runtime.txt", "postBuild", "start"):
        assert os.path.isfile(os.path.join(BINDER, name)), f"binder/{name} is missing"
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script} must be executable"
    with open(os.path.join(BINDER, "runtime.txt")) as f:
        assert f.read().strip().startswith("python-3."), "runtime.txt names a Python 3 version"


@pytest.fixture(scope="session")
def binder_env(tmp_path_factory):
    """A new venv and scratch HOME, set up as repo2docker does: pip install -r
    requirements.txt, then postBuild (built once per test run)."""
    require_browser()
    venv = Venv(tmp_path_factory.mktemp("binder"))
    venv.run(str(venv.bin / "pip"), "install", "-r", os.path.join(BINDER, "requirements.txt"))
    venv.run(os.path.join(BINDER, "postBuild"))
    return {"env": venv.env, "venv": venv.path, "home": venv.home, "root": venv.root}


@pytest.mark.timeout(1200)
def test_postbuild_installs_the_project_and_both_extensions(binder_env):
    python = binder_env["venv"] / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import jupyter_edge, sys; print(jupyter_edge.__file__, sys.prefix)"],
        env=binder_env["env"],
        cwd=str(binder_env["home"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    module, prefix = where.stdout.split()
    assert module.startswith(str(binder_env["venv"])), f"jupyter_edge came from {module}, not the fresh venv"
    listing = subprocess.run(
        [str(binder_env["venv"] / "bin" / "jupyter"), "labextension", "list"],
        env=binder_env["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "jupyter-edge" in listing.stdout + listing.stderr, listing.stdout + listing.stderr
    assert os.path.isdir(os.path.join(prefix, "share", "jupyter", "labextensions", "jupyter-edge", "static"))


@pytest.mark.timeout(600)
def test_start_brings_up_the_demo_and_the_sidebar_shows_it(binder_env):
    from playwright.sync_api import sync_playwright

    root = binder_env["root"] / "run"
    demo_dir = root / "demo"
    lab = Lab(
        root,
        scheduler=None,
        python=str(binder_env["venv"] / "bin" / "python"),
        wrapper=[os.path.join(BINDER, "start")],
        timeout=240,
        env={**binder_env["env"], "JUPYTER_EDGE_DEMO_DIR": str(demo_dir)},
    )
    try:
        with open(demo_dir / "scheduler.json") as f:
            address = json.load(f)["address"]
        with sync_playwright() as playwright:
            context = launch_chromium(playwright, root / "chromium-profile")
            try:
                page = open_lab(context, lab)
                page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 4", timeout=60_000)
                sites = sorted(page.eval_on_selector_all(".jp-EdgeSite", "els => els.map(e => e.dataset.site)"))
                assert sites == ["berlin", "boston", "paris", "tokyo"]
                connection = page.locator(".jp-EdgeConnection")
                assert connection.get_attribute("data-status") == "connected"
                assert address in connection.inner_text(), "JupyterLab is not watching the fleet start began"
                datasets = page.eval_on_selector_all(".jp-EdgeDataset", "els => els.map(e => e.dataset.dataset)")
                assert "archive" in datasets, f"the demo's S3 dataset is missing: {datasets}"
            finally:
                context.close()
    finally:
        lab.close()
    # Stopping JupyterLab's process group stopped the demo fleet start began.
    log = (demo_dir / "demo.log").read_text()
    assert "jupyter-edge demo stopped" in log, f"the demo did not stop cleanly:\n{log[-2000:]}"


def demo_processes(demo_dir: Path) -> list[str]:
    """Command lines of processes still running from the demo in ``demo_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = "State:\tZ" in (entry / "status").read_text()
        except OSError:
            continue
        if str(demo_dir) in cmdline and not zombie:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def start_env(binder_env, demo_dir: Path) -> dict:
    return {**binder_env["env"], "JUPYTER_EDGE_DEMO_DIR": str(demo_dir)}


@pytest.mark.timeout(1200)
def test_every_notebook_runs_in_binders_environment(binder_env):
    """``binder/start jupyter nbconvert --execute`` of the six notebooks, as a user
    on Binder (or here) runs them; each shows what tests/test_notebooks.py checks.
    The demo start began ends with the command, whose exit status is kept."""
    import nbformat

    root = binder_env["root"] / "notebooks"
    demo_dir, out = root / "demo", root / "out"
    names = sorted(CHECKS)
    done = subprocess.run(
        [
            os.path.join(BINDER, "start"),
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=300",
            "--output-dir",
            str(out),
            *(str(NOTEBOOKS / n) for n in names),
        ],
        env=start_env(binder_env, demo_dir),
        cwd=str(binder_env["home"]),
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert done.returncode == 0, f"nbconvert failed in Binder's environment:\n{done.stderr[-6000:]}"
    for name in names:
        nb = nbformat.read(out / name, as_version=4)
        assert not failed_cells(nb), f"{name}: cells {failed_cells(nb)} failed in Binder's environment"
        CHECKS[name](nb, all_text(nb))
    assert "jupyter-edge demo stopped" in (demo_dir / "demo.log").read_text(), "the demo did not stop cleanly"
    assert demo_processes(demo_dir) == [], "the demo outlived the command binder/start ran"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("how", "status"), [("exits 3", 3), ("is interrupted", 130)])
def test_start_stops_its_demo_when_the_command_ends(binder_env, how, status):
    demo_dir = binder_env["root"] / f"ends-{status}"
    if status == 3:
        command = [sys.executable, "-c", "import os, sys; print(os.environ['JUPYTER_EDGE_SCHEDULER']); sys.exit(3)"]
    else:
        command = ["sleep", "300"]
    said = binder_env["root"] / f"ends-{status}.log"
    with open(said, "w") as err:
        proc = subprocess.Popen(
            [os.path.join(BINDER, "start"), *command],
            env=start_env(binder_env, demo_dir),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        if status == 130:
            deadline = time.monotonic() + 180
            while "binder/start: demo fleet of" not in said.read_text():  # said just before the command
                assert proc.poll() is None, f"binder/start ended early:\n{said.read_text()}"
                assert time.monotonic() < deadline, f"the demo did not start:\n{said.read_text()}"
                time.sleep(0.2)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = said.read_text()
    assert proc.returncode == status, f"binder/start should exit as its command ({status}) when it {how}:\n{stderr}"
    if status == 3:
        assert stdout.startswith("tcp://"), f"the command should see the demo's address, printed {stdout!r}"
    assert demo_processes(demo_dir) == [], f"the demo outlived the command that {how}"
    assert "jupyter-edge demo stopped" in (demo_dir / "demo.log").read_text(), "the demo did not stop cleanly"
