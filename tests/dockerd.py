"""A real Docker engine for the container tests: Debian's ``dockerd`` with its own
data root, exec root and socket (nothing of the machine's own engine is used),
and a Python 3 image built locally, since no registry is reachable: a
``debootstrap --variant=minbase --include=python3`` root given to ``docker import``.

The root's tarball is cached (``$JUPYTER_EDGE_TEST_CACHE``, default
``~/.cache/jupyter-edge-tests``), so it is made once per machine, and imported
once per test run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

IMAGE = "edge-python:3.11"
SUITE = "bookworm"
MIRROR = os.environ.get("JUPYTER_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def require_docker() -> None:
    """Skip without an engine to start, unless CI says there must be one."""
    missing = [tool for tool in ("dockerd", "debootstrap") if shutil.which(tool) is None]
    reason = None
    if missing:
        reason = f"container tests need {' and '.join(missing)} (Debian's docker.io, debootstrap)"
    elif os.geteuid() != 0:
        reason = "container tests start their own dockerd, which needs root"
    else:
        try:
            import docker  # noqa: F401
        except ImportError:
            reason = "container tests need the docker package (the 'docker' extra)"
    if reason:
        if os.environ.get("JUPYTER_EDGE_REQUIRE_DOCKER") == "1":
            pytest.fail(reason + " (JUPYTER_EDGE_REQUIRE_DOCKER=1)")
        pytest.skip(reason)


class Engine:
    """A running ``dockerd`` and a client to it."""

    def __init__(self, root: Path):
        import docker

        self.root = root
        # The exec root holds mounts (a network namespace): outside pytest's
        # temporary folders, which pytest prunes, and unmounted at close.
        self.exec_root = Path(tempfile.mkdtemp(prefix="jupyter-edge-dockerd-"))
        self.socket = root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log = root / "dockerd.log"
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                f"--data-root={root / 'data'}",
                f"--exec-root={self.exec_root}",
                f"--pidfile={root / 'dockerd.pid'}",
                f"--host={self.url}",
            ],
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"dockerd exited at start:\n{self.log.read_text()[-3000:]}"
            try:
                self.client = docker.DockerClient(base_url=self.url, timeout=30)
                self.client.ping()
                break
            except Exception:
                assert time.monotonic() < deadline, f"dockerd did not answer in 60 s:\n{self.log.read_text()[-3000:]}"
                time.sleep(0.2)

    def import_image(self, tarball: Path, tag: str) -> None:
        repository, _, version = tag.partition(":")
        self.client.api.import_image(src=str(tarball), repository=repository, tag=version or "latest")
        self.client.images.get(tag)  # raises if the import did not take

    def containers(self, **labels) -> list:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()] or ["jupyter-edge.site"]}
        return self.client.containers.list(all=True, filters=filters)

    def close(self) -> None:
        for container in self.client.containers.list(all=True):
            container.remove(force=True)
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        for mount in self.exec_root.glob("netns/*"):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def python_rootfs() -> Path:
    """The cached tarball of a minimal Debian root with Python 3, made if missing."""
    cache = Path(os.environ.get("JUPYTER_EDGE_TEST_CACHE", Path.home() / ".cache" / "jupyter-edge-tests"))
    tarball = cache / f"debian-{SUITE}-python3.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"debian-{SUITE}-python3.root"
    shutil.rmtree(root, ignore_errors=True)
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(root), MIRROR],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True, timeout=300)
    partial.rename(tarball)
    shutil.rmtree(root, ignore_errors=True)
    return tarball
