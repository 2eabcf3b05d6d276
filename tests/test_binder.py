"""binder/ checked offline, as repo2docker would run it: requirements.txt, then
postBuild, in a fresh virtual environment with a scratch HOME (built once per
test run); then binder/start brings up the demo fleet and the JupyterLab it
wraps, and the sidebar shows the fleet's sites in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    """A fresh venv and scratch HOME, set up as repo2docker does: pip install -r
    requirements.txt, then postBuild. Only pip's download cache is shared."""
    require_browser()
    root = tmp_path_factory.mktemp("binder")
    venv, home = root / "venv", root / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True).stdout.strip()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "JUPYTER", "CONDA"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", HOME=str(home), VIRTUAL_ENV=str(venv),
               PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if cache and os.path.isdir(cache):
        env["PIP_CACHE_DIR"] = cache
    log = root / "build.log"
    with open(log, "wb") as out:
        for step in ([str(venv / "bin" / "pip"), "install", "-r", os.path.join(BINDER, "requirements.txt")],
                     [os.path.join(BINDER, "postBuild")]):
            done = subprocess.run(step, env=env, cwd=str(home), stdout=out, stderr=subprocess.STDOUT, timeout=900)
            assert done.returncode == 0, f"{step[0]} failed:\n{log.read_text()[-4000:]}"
    return {"env": env, "venv": venv, "home": home, "root": root}


@pytest.mark.timeout(1200)
def test_postbuild_installs_the_project_and_both_extensions(binder_env):
    python = binder_env["venv"] / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import jupyter_edge, sys; print(jupyter_edge.__file__, sys.prefix)"],
                           env=binder_env["env"], cwd=str(binder_env["home"]), capture_output=True, text=True,
                           timeout=60)
    assert where.returncode == 0, where.stderr
    module, prefix = where.stdout.split()
    assert module.startswith(str(binder_env["venv"])), f"jupyter_edge came from {module}, not the fresh venv"
    listing = subprocess.run([str(binder_env["venv"] / "bin" / "jupyter"), "labextension", "list"],
                             env=binder_env["env"], capture_output=True, text=True, timeout=60)
    assert "jupyter-edge" in listing.stdout + listing.stderr, listing.stdout + listing.stderr
    assert os.path.isdir(os.path.join(prefix, "share", "jupyter", "labextensions", "jupyter-edge", "static"))


@pytest.mark.timeout(600)
def test_start_brings_up_the_demo_and_the_sidebar_shows_it(binder_env):
    from playwright.sync_api import sync_playwright

    root = binder_env["root"] / "run"
    demo_dir = root / "demo"
    lab = Lab(root, scheduler=None, python=str(binder_env["venv"] / "bin" / "python"),
              wrapper=[os.path.join(BINDER, "start")], timeout=240,
              env={**binder_env["env"], "JUPYTER_EDGE_DEMO_DIR": str(demo_dir)})
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
