"""Real JupyterLab in headless Chromium, for the sidebar's browser tests.

JupyterLab runs as a subprocess with its own runtime, settings and workspace
folders (nothing of the user's is read or written); Chromium is Debian's, driven
by playwright with a fresh profile. Nothing is downloaded.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = os.environ.get("JUPYTER_EDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# pytest-jupyter's autouse fixtures run and close an asyncio loop around every
# test; playwright's sync API keeps its own loop running in the test's thread.
# Browser tests start JupyterLab as a subprocess and need neither: a test module
# imports these two to replace them.
@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    yield


def require_tool(path: str, what: str) -> None:
    """Skip without a tool CI installs, unless CI says it must be there."""
    if not (os.path.exists(path) or shutil.which(path)):
        reason = f"needs {what} ({path})"
        if os.environ.get("JUPYTER_EDGE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (JUPYTER_EDGE_REQUIRE_BROWSER=1: CI installs it)")
        pytest.skip(reason)


def require_browser() -> None:
    """Skip without Chromium or playwright, unless CI says they must be there."""
    missing = []
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        reason = f"browser tests need {' and '.join(missing)}"
        if os.environ.get("JUPYTER_EDGE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (JUPYTER_EDGE_REQUIRE_BROWSER=1)")
        pytest.skip(reason)


class Lab:
    """``jupyter lab`` on a free port, watching ``scheduler`` with the sidebar
    polling every ``interval`` ms. Its kernels inherit ``JUPYTER_EDGE_SCHEDULER``.

    ``python`` is the interpreter whose JupyterLab runs; ``wrapper`` a command
    that runs before it and execs it (``binder/start``), which may set the
    scheduler itself (``scheduler=None``). The whole process group is stopped
    at the end, so what a wrapper started in the background stops too.
    """

    def __init__(
        self,
        root,
        scheduler: str | None,
        interval: int = 400,
        env: dict | None = None,
        python: str = sys.executable,
        wrapper: list[str] | None = None,
        timeout: float = 60,
    ):
        self.root = root
        runtime, settings, workspaces, notebooks = (root / d for d in ("runtime", "settings", "workspaces", "work"))
        for folder in (runtime, settings, workspaces, notebooks):
            folder.mkdir(parents=True, exist_ok=True)
        self._user_settings(settings, interval)
        self.env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), **(env or {})}
        if scheduler is not None:
            self.env["JUPYTER_EDGE_SCHEDULER"] = scheduler
        args = [
            *(wrapper or []),
            python,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.port=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={notebooks}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={workspaces}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
        ]
        if os.geteuid() == 0:
            args.append("--allow-root")
        self.log_path = root / "lab.log"
        self.process = subprocess.Popen(
            args, env=self.env, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.url, self.token = self._wait_for_server(runtime, timeout)

    @staticmethod
    def _user_settings(folder, interval: int) -> None:
        """The sidebar's poll interval; no news or update checks in screenshots."""
        edge = folder / "jupyter-edge" / "plugin.jupyterlab-settings"
        edge.parent.mkdir(parents=True, exist_ok=True)
        edge.write_text(json.dumps({"refreshInterval": interval}))
        notes = folder / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notes.parent.mkdir(parents=True, exist_ok=True)
        notes.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))

    def _wait_for_server(self, runtime, timeout: float = 60) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"JupyterLab exited at start:\n{self.log()}"
            for path in glob.glob(str(runtime / "jpserver-*.json")):
                with open(path) as f:
                    info = json.load(f)
                url = info["url"].rstrip("/")
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={info['token']}", timeout=2)
                except OSError:
                    break
                return url, info["token"]
            time.sleep(0.2)
        raise AssertionError(f"JupyterLab did not answer in {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        # What the wrapper started (a demo fleet) gets the same time to stop.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.killpg(self.process.pid, signal.SIGKILL)


def launch_chromium(playwright, profile_dir, **kwargs):
    """Debian's Chromium, headless, with a fresh profile."""
    return playwright.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1300},
        **kwargs,
    )


def open_lab(context, lab: Lab, timeout_ms: int = 60_000):
    """A page with JupyterLab's shell up and the Edge fleet sidebar open."""
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(f"{lab.url}/lab?token={lab.token}")
    page.wait_for_selector("#jp-main-dock-panel")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.commands.hasCommand('jupyter-edge:open')")
    # The sidebar's own icon in the left bar, as a user would click it.
    page.click(".jp-SideBar .lm-TabBar-tab[data-id='jupyter-edge-sidebar']")
    page.wait_for_selector("#jupyter-edge-sidebar", state="visible")
    return page
