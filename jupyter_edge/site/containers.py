"""Container executions at a site, through its own Docker-compatible engine.

A site started with ``--docker`` runs ``%%edge --image`` cells and ``%edge run``
commands in a fresh container per execution: the dataset's local folder
mounted read-only at ``/data/NAME``, no network unless asked, CPU and memory
limits, labelled with its job and execution, stopped and removed at its end
whatever happens. A cell runs under ``container_runner.py`` (standard library
only, mounted read-only), which talks JSON over a Unix socket in a private
folder; a command's stdout and stderr come back as they are written.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable

from .. import config
from ..catalog import GPU
from .gpu.visibility import container_devices
from .outcome import outcome

logger = logging.getLogger(__name__)

#: Labels on every container a site starts, so it can find its own.
LABEL_SITE = "jupyter-edge.site"
LABEL_JOB = "jupyter-edge.job"
LABEL_EXECUTION = "jupyter-edge.execution"
#: Where things are inside a container.
DATA_ROOT = "/data"
RUNNER_PATH = "/opt/jupyter-edge/container_runner.py"
IO_PATH = "/edge/io"
RUNNER_SOURCE = os.path.join(os.path.dirname(__file__), "container_runner.py")
#: Mounted beside the runner, which imports it: a cell's value semantics, as runners have them.
CELL_PATH = "/opt/jupyter-edge/edge_cell.py"
CELL_SOURCE = os.path.join(os.path.dirname(__file__), "cell.py")

_TICK = 0.1


class ContainerError(RuntimeError):
    """A container execution could not start; the message says why."""


class ContainerEngine:
    """A site's engine: what it reports, and the executions it runs."""

    def __init__(self, site: str, url: str | None = None):
        try:
            import docker
        except ImportError:
            raise ContainerError(
                "containers need the docker package at the site: pip install 'jupyter-edge[docker]'"
            ) from None
        self.site = site
        try:
            self.client = docker.DockerClient(base_url=url) if url else docker.from_env()
            self.version = self.client.version().get("Version", "?")
        except docker.errors.DockerException as e:
            raise ContainerError(f"site {site}: no container engine at {url or '$DOCKER_HOST'}: {e}") from None
        self._stops: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- what the site reports -------------------------------------------------

    def describe(self) -> dict:
        """The engine for the catalog: kind, version, the images it holds."""
        images = sorted({tag for image in self.client.images.list() for tag in image.tags})
        return {"engine": "docker", "version": self.version, "images": images}

    def sweep(self, why: str = "left from before it started") -> int:
        """Remove every container of this site: at start, those a site killed
        mid-job left behind; at its end, any still running."""
        leftovers = self.client.containers.list(all=True, filters={"label": f"{LABEL_SITE}={self.site}"})
        for container in leftovers:
            self._remove(container)
        if leftovers:
            logger.warning("site %s removed %d container(s) %s", self.site, len(leftovers), why)
        return len(leftovers)

    def close(self) -> None:
        self.client.close()

    # --- executions -------------------------------------------------------------

    def stop(self, execution: str, reason: str) -> None:
        with self._lock:
            self._stops.setdefault(execution, reason)

    def execute(
        self,
        execution: str,
        job: str,
        work: dict,
        dataset,
        storage_options: dict,
        on_output: Callable[[dict], None],
        deadline: float | None,
        gpus: list[GPU],
        site_info: dict,
        result_limit: int | None = None,
    ) -> dict:
        """Run one container execution to its end; return its outcome (the runner
        pool's shape: a pickled value, state, error)."""
        io_dir = tempfile.mkdtemp(prefix=f"edge-{execution}-")
        os.chmod(io_dir, 0o755)
        listener = None
        container = None
        started = time.time()
        try:
            options = self._run_options(execution, job, work, dataset, storage_options, gpus, io_dir)
            if work.get("cell") is not None:
                listener = _listen(io_dir)
                _write_request(
                    io_dir,
                    work,
                    dataset,
                    site_info,
                    result_limit if result_limit is not None else config.nbytes("result-limit"),
                )
            self._ensure_image(work["image"], work.get("pull", False))
            container = self.client.containers.create(**options)
            container.start()
            if listener is not None:
                return self._follow_cell(execution, container, listener, on_output, deadline, started)
            return self._follow_command(execution, container, on_output, deadline, started)
        except ContainerError as e:
            return outcome("failed", str(e), "ContainerError", started=started)
        finally:
            if container is not None:
                self._remove(container)
            if listener is not None:
                listener.close()
            shutil.rmtree(io_dir, ignore_errors=True)
            with self._lock:
                self._stops.pop(execution, None)

    def _run_options(
        self, execution: str, job: str, work: dict, dataset, storage_options: dict, gpus: list[GPU], io_dir: str
    ) -> dict:
        volumes: dict[str, dict] = {}
        env: dict[str, str] = {}
        network = work.get("network")
        if dataset is not None:
            inside = f"{DATA_ROOT}/{dataset.name}"
            if dataset.kind == "local":
                volumes[os.path.abspath(dataset.url)] = {"bind": inside, "mode": "ro"}
                env["EDGE_DATASET_PATH"] = inside
            elif not network:
                raise ContainerError(
                    f"dataset {dataset.name!r} is in {dataset.kind} ({dataset.url}), which cannot be mounted "
                    "into a container: add --network to let the container read it with the site's credentials"
                )
            else:
                env.update(_credentials(dataset.kind, storage_options))
                env["EDGE_DATASET_URL"] = dataset.url
            env.update(EDGE_DATASET=dataset.name, EDGE_DATASET_SHARD=dataset.shard)
        if work.get("cell") is not None:
            volumes[RUNNER_SOURCE] = {"bind": RUNNER_PATH, "mode": "ro"}
            volumes[CELL_SOURCE] = {"bind": CELL_PATH, "mode": "ro"}
            volumes[io_dir] = {"bind": IO_PATH, "mode": "rw"}
            command = ["python3", "-u", RUNNER_PATH]
            env["EDGE_IO_DIR"] = IO_PATH
        else:
            command = list(work["command"])
        options = {
            "image": work["image"],
            "command": command,
            "environment": env,
            "volumes": volumes,
            "labels": {LABEL_SITE: self.site, LABEL_JOB: job, LABEL_EXECUTION: execution},
            "network_mode": "none" if not network else (None if network is True else network),
            "detach": True,
            "stdin_open": False,
            "tty": False,
        }
        if work.get("cpus"):
            options["nano_cpus"] = int(float(work["cpus"]) * 1e9)
        if work.get("memory"):
            options["mem_limit"] = work["memory"]
        if gpus:
            options.update(container_devices(gpus))
        if options["network_mode"] is None:
            del options["network_mode"]
        return options

    def _ensure_image(self, image: str, pull: bool) -> None:
        import docker

        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        if pull:
            try:
                self.client.images.pull(image)
                return
            except docker.errors.DockerException as e:
                raise ContainerError(
                    f"image {image!r} is not at site {self.site} and pulling it failed: {_reason(e)}"
                ) from None
        held = ", ".join(self.describe()["images"]) or "none"
        raise ContainerError(
            f"image {image!r} is not at site {self.site} (its engine holds: {held}); "
            "load it there, or add --pull to have the engine pull it"
        )

    def _stop_requested(self, execution: str, deadline: float | None) -> str | None:
        with self._lock:
            if execution not in self._stops and deadline is not None and time.time() >= deadline:
                self._stops[execution] = "timed-out"
            return self._stops.get(execution)

    def _follow_cell(
        self,
        execution: str,
        container,
        listener: socket.socket,
        on_output: Callable[[dict], None],
        deadline: float | None,
        started: float,
    ) -> dict:
        """Relay the runner's JSON lines until its result, a stop, or its exit."""
        listener.settimeout(_TICK)
        conn, buffer = None, b""
        while True:
            reason = self._stop_requested(execution, deadline)
            if reason is not None:
                self._halt(container)
                return outcome(reason, f"{reason} at the site; the container was stopped and removed", started=started)
            if conn is None:
                try:
                    conn, _ = listener.accept()
                    conn.settimeout(_TICK)
                except TimeoutError:
                    if not self._running(container):
                        return self._runner_failed(container, started)
                    continue
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return self._runner_failed(container, started)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["op"] == "output":
                    on_output(message["output"])
                elif message["op"] == "result":
                    conn.close()
                    done = message.get("state") == "done"
                    return {**message, "value": _value_bytes(message.get("value")) if done else None}

    def _follow_command(
        self, execution: str, container, on_output: Callable[[dict], None], deadline: float | None, started: float
    ) -> dict:
        """Stream the command's stdout and stderr; its exit code is its value."""
        import requests  # the docker SDK's transport

        readers = [
            threading.Thread(
                target=_relay_logs, args=(container, name, on_output), daemon=True, name=f"edge-{name}-{execution}"
            )
            for name in ("stdout", "stderr")
        ]
        for reader in readers:
            reader.start()
        while True:
            reason = self._stop_requested(execution, deadline)
            if reason is not None:
                self._halt(container)
                for reader in readers:
                    reader.join(5)
                return outcome(reason, f"{reason} at the site; the container was stopped and removed", started=started)
            try:
                code = container.wait(timeout=_TICK)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                continue  # still running (the SDK's wait times out through its HTTP transport)
            for reader in readers:
                reader.join(10)
            value = pickle.dumps(code)
            if code != 0:
                return outcome(
                    "failed", f"the command exited with code {code}", "CommandFailed", value=value, started=started
                )
            return outcome("done", value=value, started=started)

    def _running(self, container) -> bool:
        container.reload()
        return container.status in ("created", "running")

    def _runner_failed(self, container, started: float) -> dict:
        """The runner ended without a result: the image lacks Python 3, or the
        container was killed (out of memory, ...)."""
        container.reload()
        state = container.attrs.get("State", {})
        logs = container.logs(stdout=True, stderr=True, tail=20).decode("utf-8", "replace").strip()
        why = "killed: out of memory (--memory)" if state.get("OOMKilled") else f"exit code {state.get('ExitCode')}"
        hint = " (does the image have python3?)" if state.get("ExitCode") in (126, 127) else ""
        return outcome(
            "failed",
            f"the cell's runner in the container ended without a result: {why}{hint}" + (f"\n{logs}" if logs else ""),
            "ContainerRunnerDied",
            started=started,
        )

    def _halt(self, container) -> None:
        import docker

        try:
            container.stop(timeout=max(1, int(config.seconds("runner.interrupt-grace"))))
        except docker.errors.DockerException:  # already gone: removing it below is what matters
            logger.debug("stopping container %s failed", container.id, exc_info=True)

    def _remove(self, container) -> None:
        import docker

        try:
            container.remove(force=True)
        except docker.errors.DockerException:  # removed already (a sweep racing an execution's end)
            logger.debug("removing container %s failed", container.id, exc_info=True)


def _listen(io_dir: str) -> socket.socket:
    path = os.path.join(io_dir, "site.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)  # the image's user may not be root
    listener.listen(1)
    return listener


def _write_request(io_dir: str, work: dict, dataset, site_info: dict, result_limit: int) -> None:
    request = {
        "cell": work["cell"],
        "dataset": {
            "name": dataset.name,
            "shard": dataset.shard,
            "path": f"{DATA_ROOT}/{dataset.name}" if dataset.kind == "local" else dataset.url,
        }
        if dataset is not None
        else None,
        "site": site_info,
        "result_limit": result_limit,
    }
    path = os.path.join(io_dir, "request.json")
    with open(path, "w") as f:
        json.dump(request, f)
    os.chmod(path, 0o644)


def _relay_logs(container, name: str, on_output: Callable[[dict], None]) -> None:
    """One of the command's streams as it is written (all of it, even if it already ended)."""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=name == "stdout", stderr=name == "stderr"):
            on_output({"name": name, "text": chunk.decode("utf-8", "replace")})
    except Exception:  # the container was removed under a stop: nothing more to read
        logger.debug("reading %s of container %s ended", name, container.id, exc_info=True)


def _value_bytes(value: dict | None) -> bytes:
    """The runner's JSON value as the notebook receives values: pickled here, at the site.
    A cell without a value (it ends with a statement, or ``;``) has the value ``None``,
    as at a runner."""
    if value is None:
        return pickle.dumps(None)
    if "json" in value:
        return pickle.dumps(value["json"])
    from ..container_value import ContainerValue

    return pickle.dumps(ContainerValue(value.get("mime", {})))


def _credentials(kind: str, storage_options: dict) -> dict[str, str]:
    """The site's own credentials for ``kind``, for this one container only."""
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")} if kind == "s3" else {}
    options = storage_options.get(kind, {}) if isinstance(storage_options, dict) else {}
    if options.get("key"):
        env["AWS_ACCESS_KEY_ID"] = options["key"]
    if options.get("secret"):
        env["AWS_SECRET_ACCESS_KEY"] = options["secret"]
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def _reason(error: Exception) -> str:
    return str(getattr(error, "explanation", None) or error)
