"""The front end as `pip install` ships it: the prebuilt extension and the
server extension both enabled, and the model's jest suite passing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

LABEXTENSION = os.path.join(os.path.dirname(__file__), os.pardir, "labextension")


def jupyter(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=60)
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # no colour codes


def test_the_prebuilt_sidebar_is_installed_and_enabled():
    listing = jupyter("labextension", "list")
    # The extension's own line ("jupyter-edge v0.1.0 enabled OK ..."), not a folder whose path says jupyter-edge.
    line = next((ln for ln in listing.splitlines() if re.match(r"\s+jupyter-edge v", ln)), None)
    assert line is not None, f"jupyter-edge is not among the lab extensions:\n{listing}"
    assert "enabled" in line and "OK" in line, f"expected 'enabled OK', got: {line.strip()}"


def test_the_server_extension_is_enabled():
    listing = jupyter("server", "extension", "list")
    assert re.search(r"jupyter_edge\s+enabled", listing), f"jupyter_edge is not enabled:\n{listing}"
    assert re.search(r"jupyter_edge \S+ OK", listing), f"jupyter_edge did not validate:\n{listing}"


def test_the_models_jest_suite_passes():
    npm = shutil.which("npm")
    if npm is None or not os.path.isdir(os.path.join(LABEXTENSION, "node_modules")):
        if os.environ.get("JUPYTER_EDGE_REQUIRE_BROWSER") == "1":
            pytest.fail("npm and labextension/node_modules are needed (pip install -e . installs them)")
        pytest.skip("needs npm and labextension/node_modules (an editable install makes them)")
    done = subprocess.run(
        [npm, "test", "--silent", "--", "--ci"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=300
    )
    summary = [ln for ln in done.stderr.splitlines() if ln.startswith("Tests:")]
    assert done.returncode == 0, f"jest failed:\n{done.stderr[-4000:]}"
    assert summary and "failed" not in summary[0], f"unexpected jest summary: {summary}"
