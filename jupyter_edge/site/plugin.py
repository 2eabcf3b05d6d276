"""The site plugin: turns a Dask worker into an edge site.

It reports the site's labels, datasets (measured, and re-measured on an
interval), GPUs and versions to the scheduler on the ``edge-site`` event topic,
owns the site's runner pool, and stops a runner when Dask cancels its task.
Storage options and credentials stay here: reports carry only names and URLs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from distributed import WorkerPlugin, get_worker
from distributed.utils import sync
from tornado.ioloop import PeriodicCallback

from .. import config, protocol
from ..catalog import GPU, DatasetShard, Site
from ..protocol import (
    DROP_SESSIONS_OP,
    EXECUTION_TOPIC,
    INLINE_RESULT,
    JOB_HANDLER,
    RESERVED_PREFIX,
    SITE_TOPIC,
    VALUE_ACK_OP,
    gpu_resource,
)
from ..versions import versions
from ..wasm_work import SITE_MODULE, module_sha256
from . import audit
from .audit import AuditLog
from .containers import ContainerEngine
from .dataset import DatasetDeclaration, scan
from .gpu import GPUInventory, discover_gpus, visibility
from .policy import Policy, Refused
from .round_trip import RoundTrip
from .runner import RunnerPool
from .self_labels import self_labels
from .transfer import TransferStopped, ValueSender
from .wasm import WasmError, WasmRunner

logger = logging.getLogger(__name__)

#: An execution still running this long after it started is reported ``running``.
_RUNNING_AFTER = 0.05


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    reserved = sorted(k for k in labels if k.startswith(RESERVED_PREFIX))
    if reserved:
        raise ValueError(
            f"labels {', '.join(reserved)}: the '{RESERVED_PREFIX}' prefix is reserved for labels a site sets itself"
        )
    return dict(labels)


class EdgeSitePlugin(WorkerPlugin):
    """Make a worker an edge site with ``labels``, ``datasets`` and ``gpus``.

    ``gpus`` is ``"auto"`` (every source, reading the host under ``host_root``),
    a count declared by hand, ``None`` (none), or an inventory already discovered.
    Beside ``labels``, the site sets its own (``edge.arch``, ``edge.gpu.vendor``, ...:
    see :mod:`.self_labels`).
    """

    name = "jupyter-edge-site"
    idempotent = True

    def __init__(
        self,
        labels: dict[str, str] | None = None,
        datasets: list[DatasetDeclaration] | tuple = (),
        gpus: str | int | GPUInventory | None = None,
        storage_options: dict | None = None,
        docker: str | bool | ContainerEngine | None = None,
        policy: Policy | None = None,
        audit_log: str | None = None,
        keep_runners: bool = False,
        host_root: str = "/",
        wasm: bool | WasmRunner = False,
    ):
        check_labels(labels or {})
        # Runners outlive a worker of this site (a site that rejoins its scheduler keeps
        # them, and the notebooks' names in them); ``close()`` ends them.
        self.keep_runners = keep_runners
        self.policy = policy or Policy()
        self._audit_path = audit_log  # default: config, else the site's state folder
        self.audit: AuditLog | None = None
        # ``docker``: run container executions through this engine (True: $DOCKER_HOST),
        # or through this already connected one, which the site then owns.
        self.docker = docker
        self.containers: ContainerEngine | None = None
        self.container_info: dict | None = None
        names = [d.name for d in datasets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"dataset {', '.join(twice)} declared twice: a site holds one shard of a dataset")
        self.datasets = {d.name: d for d in datasets}
        self.gpus = gpus if isinstance(gpus, GPUInventory) else discover_gpus(gpus, host_root=host_root)
        # ``wasm``: run WebAssembly modules (wasmtime must be installed), or through this runner.
        self.wasm = wasm if isinstance(wasm, WasmRunner) else WasmRunner(config.get("wasm.modules")) if wasm else None
        executors = ["python", *(["docker"] if docker else []), *(["wasm"] if self.wasm else [])]
        self.labels = {**(labels or {}), **self_labels(self.gpus, executors)}
        self._storage_options = storage_options
        self.measurements: dict[str, dict] = {}
        self.worker = None
        self.pool: RunnerPool | None = None
        self.values: ValueSender | None = None  # large values on their way to notebooks
        self._active: dict[str, dict] = {}  # execution -> {"job", "started", "reported"}
        self._final: dict[str, dict] = {}  # execution -> its last event, sent with its task's end

    @property
    def resources(self) -> dict[str, float]:
        """The Dask resources to start the worker with: its GPUs, and those of each vendor."""
        if not self.gpus.count:
            return {}
        return {"GPU": self.gpus.count, **{gpu_resource(v): n for v, n in self.gpus.vendors.items()}}

    async def setup(self, worker) -> None:
        # Set up again for each worker of the site: a site that rejoins its scheduler
        # gets a new worker, new runners and a clean slate of executions.
        self.worker = worker
        self._active.clear()
        self._final.clear()
        declared = worker.state.total_resources.get("GPU", 0)
        if declared != self.gpus.count:
            raise ValueError(
                f"site {worker.name}: the worker has resources GPU={declared:g} but the site "
                f"has {self.gpus.count} GPU(s); start it with resources=plugin.resources"
            )
        self.audit = AuditLog(self._audit_path or config.get("audit-log") or audit.default_path(str(worker.name)))
        self._free_gpus = list(self.gpus.gpus)
        self._gpu_lock = threading.Lock()
        if self.gpus.samplers:
            worker.metrics["edge-gpus"] = lambda w: self.gpus.sample()
        if self.pool is None or self.pool.closed:  # a site that rejoins keeps its runners
            env = visibility.hidden(self.gpus.gpus)
            self.pool = RunnerPool(worker.state.nthreads, env=env)  # runners start on first use
        self.values = ValueSender(post=lambda msg: worker.loop.add_callback(worker.batched_send, msg))
        # What the scheduler sends this site comes on the stream the site opened.
        worker.stream_handlers[VALUE_ACK_OP] = self._on_value_ack
        worker.stream_handlers[DROP_SESSIONS_OP] = self._on_drop_sessions
        # The round trip to the scheduler, from the worker's own heartbeats.
        worker.metrics["edge-rtt"] = RoundTrip()
        if self.docker:
            await asyncio.to_thread(self._start_containers, str(worker.name))
        await self.rescan(report=False)
        # Plugins given to a Worker are set up before it registers: report
        # once the stream to the scheduler is open.
        self._first_report = asyncio.ensure_future(self._report_when_connected())
        for name, method, interval in (
            ("edge-rescan", self.rescan, config.seconds("rescan-interval")),
            ("edge-runners", self.pool.stop_idle, self.pool.idle_check_interval),
        ):
            callback = PeriodicCallback(method, interval * 1000)
            worker.periodic_callbacks[name] = callback
            callback.start()

    async def teardown(self, worker) -> None:
        if getattr(self, "_first_report", None) is not None:  # not when setup failed before it
            self._first_report.cancel()
        for name in ("edge-rescan", "edge-runners"):
            callback = worker.periodic_callbacks.pop(name, None)
            if callback is not None:
                callback.stop()
        if self.pool is not None:
            if self.keep_runners:
                # The worker goes, the site stays (it rejoins): what ran here is stopped,
                # the runners and the notebooks' names in them are kept.
                for execution in list(self._active):
                    self.pool.stop(execution, "cancelled")
            else:
                self.pool.close()
        if self.containers is not None:
            # Whatever is still running goes with the worker: no container outlives it.
            await asyncio.to_thread(self.containers.sweep, "still running as the site stopped")
            if not isinstance(self.docker, ContainerEngine):  # one given to the site is its giver's to close
                self.containers.close()

    def close(self) -> None:
        """The site is done for good (a site that keeps its runners across workers)."""
        if self.pool is not None:
            self.pool.close()

    def _start_containers(self, site: str) -> None:
        """Connect to the engine, sweep this site's leftovers, and say so in the labels."""
        if isinstance(self.docker, ContainerEngine):
            self.containers = self.docker
        else:
            self.containers = ContainerEngine(site, None if self.docker is True else str(self.docker))
        self.containers.sweep()
        self.container_info = self.containers.describe()

    @property
    def storage_options(self) -> dict:
        """fsspec options by protocol: given to the plugin, else ``edge.storage-options``."""
        if self._storage_options is not None:
            return self._storage_options
        return config.get("storage-options") or {}

    # --- what the site reports -------------------------------------------

    def site(self) -> Site:
        shards = {}
        for name, decl in self.datasets.items():
            measured = self.measurements.get(name, {})
            shards[name] = DatasetShard(dataset=name, shard=decl.shard, url=decl.url, kind=decl.kind, **measured)
        return Site(
            name=str(self.worker.name),
            address=self.worker.address,
            labels=self.labels,
            datasets=shards,
            gpus=self.gpus.gpus,
            gpu_state=self.gpus.summary,
            gpu_sources=[s.to_dict() for s in self.gpus.sources],
            versions=versions(),
            nthreads=self.worker.state.nthreads,
            containers=self.container_info,
        )

    async def _report_when_connected(self) -> None:
        while not (self.worker.batched_stream.comm and not self.worker.batched_stream.comm.closed()):
            if self.worker.status.name in ("closing", "closed", "failed"):
                return
            await asyncio.sleep(0.02)
        self.report()

    def report(self) -> None:
        self.worker.log_event(SITE_TOPIC, protocol.site_report(self.site().to_dict()))

    async def rescan(self, report: bool = True) -> None:
        """Re-measure every dataset off the event loop; report what changed."""
        options = self.storage_options
        changed = False
        for name, decl in self.datasets.items():
            try:
                size, files = await asyncio.to_thread(scan, decl, options)
                measured = {"bytes": size, "files": files, "error": None}
            except Exception as e:  # an unreachable bucket is reported, not fatal
                measured = {"bytes": None, "files": None, "error": f"{type(e).__name__}: {e}"}
                logger.warning("dataset %s at %s could not be scanned: %s", name, decl.url, e)
            old = self.measurements.get(name, {})
            changed |= any(old.get(k) != v for k, v in measured.items())
            self.measurements[name] = {**measured, "scanned": time.time()}
        if self.containers is not None:  # images loaded or removed since
            try:
                info = await asyncio.to_thread(self.containers.describe)
            except Exception as e:  # an engine that went away is reported, not fatal
                info = {**(self.container_info or {}), "error": f"{type(e).__name__}: {e}"}
            changed |= info != self.container_info
            self.container_info = info
        if report and changed:
            self.report()

    # --- executions ------------------------------------------------------

    def transition(self, key, start, finish, **kwargs) -> None:
        execution = protocol.execution_of(key)
        if execution is None:
            return
        if finish in ("cancelled", "released", "forgotten") and self.pool is not None:
            # Dask cancelled a task that is running here: stop its runner (or container) for real,
            # or the transfer of its value (a timeout, a cancel, its notebook gone).
            self.pool.stop(execution, "cancelled")
            if self.containers is not None:
                self.containers.stop(execution, "cancelled")
            if self.wasm is not None:
                self.wasm.stop(execution, "cancelled")
            self.values.stop(execution, "the job stopped (cancelled, timed out, or its notebook went away)")
        final = self._final.pop(execution, None)
        if final is not None:
            # Sent on the event loop with the task's own end, so that they share
            # its batch instead of opening ones of their own.
            event, outcome = final
            self.worker.log_event(EXECUTION_TOPIC, event)
            if finish == "memory":
                self.worker.batched_send(outcome)

    def _on_value_ack(self, execution: str, seq: int, **_) -> None:
        self.values.acknowledged(execution, seq)

    def _on_drop_sessions(self, request: str, sessions: list[str], **_) -> None:
        """Forget notebooks' names (``%edge reset``), and say how many were here."""
        count = self.pool.drop_sessions(list(sessions)) if self.pool is not None else 0
        self.worker.batched_send(protocol.sessions_dropped(request, str(self.worker.name), count))

    def _report_running(self, execution: str) -> None:
        """Tell the registry that an execution has been running a while (the quick
        ones only report their end). Called once per execution, not on a timer: an
        idle site wakes for nothing."""
        info = self._active.get(execution)
        if info is not None and not info["reported"]:
            info["reported"] = True
            self.worker.log_event(
                EXECUTION_TOPIC, protocol.execution_news(execution, info["job"], "running", started=info["started"])
            )

    def _report_running_soon(self, execution: str) -> None:
        self.worker.loop.call_later(_RUNNING_AFTER, self._report_running, execution)

    def execute(self, spec: dict) -> dict:
        """Run one execution, if the site's policy allows it, and deliver its result
        (called from the task's thread). The task's own result is only a summary:
        the notebook gets the result over the site's stream (see ``_deliver``)."""
        owner = self._owner(spec)
        kind = audit.work_kind(spec)
        image = spec["container"]["image"] if "container" in spec else None
        module = None
        self.values.expect(spec["execution"])
        try:
            try:
                if "wasm" in spec:
                    module = self._wasm_module(spec)  # its hash decides, before anything runs
                self.policy.check(owner, spec.get("dataset"), kind, image, module[1] if module else None)
            except Refused as refused:
                result = self._refuse(spec, refused)
            except WasmError as e:
                result = self._refuse(spec, e, "WasmError")
            else:
                result = self._run(spec, module)
            self._deliver(spec, result)
        finally:
            self.values.done(spec["execution"])
        decl = self.datasets.get(spec.get("dataset") or "")
        self.audit.record(
            site=str(self.worker.name),
            job=spec["job"],
            execution=spec["execution"],
            owner=owner,
            dataset=spec.get("dataset"),
            shard=decl.shard if decl else None,
            kind=kind,
            image=image,
            module=spec["wasm"].get("name") if "wasm" in spec else None,
            cell_hash=module[1] if module else audit.work_hash(spec),
            state=result["state"],
            bytes_returned=result["bytes_returned"],
            refused=getattr(result.get("refusal"), "rule", None),
        )
        return {"execution": result["execution"], "state": result["state"]}

    def _deliver(self, spec: dict, result: dict) -> None:
        """Send the result on the site's own stream: a small value with its outcome,
        a large one in chunks first (nothing gathers from a site; see site/transfer.py).
        The outcome and the registry's news go with the task's end (``transition``)."""
        execution, site = spec["execution"], str(self.worker.name)
        value = result["value"]
        if value is not None and len(value) > INLINE_RESULT:
            try:
                self.values.send(spec["job"], execution, site, value, spec.get("deadline"))
            except TransferStopped as stopped:
                result.update(
                    state="failed", error=f"the value was not delivered: {stopped}", error_type="TransferStopped"
                )
            value = None
        outcome = {k: v for k, v in result.items() if k != "refusal"}
        outcome["value"] = value
        self._final[execution] = (_news(spec["job"], result), protocol.outcome(spec["job"], execution, site, outcome))

    def _owner(self, spec: dict) -> str:
        """Who the job is for. Where the policy names owners, the scheduler's
        record says (over TLS, the client's certificate), not the client."""
        claimed = spec.get("owner") or "unknown"
        if not self.policy.restricts_owners:
            return claimed
        record = sync(self.worker.loop, getattr(self.worker.scheduler, JOB_HANDLER), job=spec["job"])
        return record["owner"] if record else claimed

    def _refuse(self, spec: dict, refused: Exception, error_type: str = "PolicyRefused") -> dict:
        """A result for work refused before it ran: by the policy, or a module that cannot be had."""
        now = time.time()
        result = {
            "execution": spec["execution"],
            "state": "failed",
            "value": None,
            "error": str(refused),
            "error_type": error_type,
            "started": None,
            "ended": now,
            "bytes_returned": 0,
            "refusal": refused,
        }
        return result

    def _wasm_module(self, spec: dict) -> tuple[bytes, str]:
        """The module's bytes and SHA-256: sent with the job, or kept here (``site:NAME``)."""
        if self.wasm is None:
            raise WasmError(f"site {self.worker.name!r} runs no WebAssembly (start it with --wasm)")
        work = spec["wasm"]
        if work.get("module") is not None:
            module = work["module"]
        else:
            module = self.wasm.site_module(work["name"].removeprefix(SITE_MODULE))
        sha256 = module_sha256(module)
        if work.get("sha256") not in (None, sha256):
            raise WasmError(f"the module arrived altered: SHA-256 {sha256}, sent as {work['sha256']}")
        return module, sha256

    def _run(self, spec: dict, module: tuple[bytes, str] | None = None) -> dict:
        execution = spec["execution"]
        gpus = self._take_gpus(spec.get("gpus", 0), spec.get("gpu_vendors"))
        self._active[execution] = {"job": spec["job"], "started": time.time(), "reported": False}
        self.worker.loop.add_callback(self._report_running_soon, execution)
        cell = spec.get("cell")
        site = str(self.worker.name)

        def on_output(output: dict) -> None:
            # The runner batches output (capture.FLUSH_INTERVAL); each batch goes out live.
            if not self.policy.output_images and output.get("name") == "display":
                output = _without_images(output)
            msg = protocol.output_batch(spec["job"], execution, site, [output])
            self.worker.loop.add_callback(self.worker.batched_send, msg)

        try:
            if "container" in spec:
                outcome = self._execute_container(spec, gpus, on_output)
            elif module is not None:
                work = spec["wasm"]
                outcome = self.wasm.execute(
                    execution,
                    *module,
                    work.get("args") or [],
                    work.get("env") or {},
                    self._declared(spec),
                    work.get("memory"),
                    on_output,
                    spec.get("deadline"),
                )
            else:
                outcome = self.pool.execute(
                    execution,
                    self._runner_request(spec, gpus),
                    on_output=on_output,
                    deadline=spec.get("deadline"),
                    session=None if cell is None or cell.get("fresh") else cell.get("session"),
                )
        finally:
            self._active.pop(execution, None)
            self._give_gpus(gpus)
        value = outcome.get("value")
        result = {
            "execution": execution,
            "state": outcome["state"],
            "value": value,
            "error": outcome.get("error"),
            "error_type": outcome.get("error_type"),
            "started": outcome.get("started"),
            "ended": outcome.get("ended"),
            "bytes_returned": len(value) if value is not None else 0,
        }
        return result

    def _execute_container(self, spec: dict, gpus: list[GPU], on_output) -> dict:
        if self.containers is None:
            raise RuntimeError(f"site {self.worker.name!r} runs no containers (start it with --docker)")
        site = {
            "name": str(self.worker.name),
            "labels": self.labels,
            "gpus": [_gpu_for_execution(g) for g in gpus],
        }
        return self.containers.execute(
            spec["execution"],
            spec["job"],
            spec["container"],
            self._declared(spec),
            self.storage_options,
            on_output,
            spec.get("deadline"),
            gpus,
            site,
            self.policy.result_limit_for(config.nbytes("result-limit")),
        )

    def _declared(self, spec: dict) -> DatasetDeclaration | None:
        decl = self.datasets.get(spec["dataset"]) if spec.get("dataset") else None
        if spec.get("dataset") and decl is None:
            raise LookupError(f"site {self.worker.name!r} holds no dataset {spec['dataset']!r}")
        return decl

    def _runner_request(self, spec: dict, gpus: list[GPU]) -> dict:
        decl = self._declared(spec)
        work = (
            {"payload": spec["payload"], "call": spec["call"]}
            if "payload" in spec
            else {
                "cell": {**spec["cell"], "idle_limit": config.seconds("session-idle")},
                "image_limit": config.nbytes("output-image-limit"),
            }
        )
        return {
            "op": "run",
            "execution": spec["execution"],
            **work,
            "dataset": {"name": decl.name, "shard": decl.shard, "url": decl.url} if decl else None,
            "storage_options": self.storage_options,
            "site": {
                "name": str(self.worker.name),
                "address": self.worker.address,
                "labels": self.labels,
                "gpus": [_gpu_for_execution(g) for g in gpus],
            },
            "env": visibility.visible(self.gpus.gpus, gpus) if gpus else {},
            "result_limit": self.policy.result_limit_for(config.nbytes("result-limit")),
        }

    def _take_gpus(self, count: int, vendors: list[str] | None = None) -> list[GPU]:
        """``count`` free GPUs, of ``vendors`` when the request named them."""
        if not count:
            return []
        with self._gpu_lock:  # Dask's GPU resources guarantee enough are free
            usable = [g for g in self._free_gpus if not vendors or g.vendor in vendors]
            if len(usable) < count:
                raise RuntimeError(
                    f"site {self.worker.name!r} has {len(usable)} free {'/'.join(vendors or ())} GPU(s), "
                    f"not the {count} this execution asks for"
                )
            taken = usable[:count]
            self._free_gpus = [g for g in self._free_gpus if g not in taken]
        return taken

    def _give_gpus(self, gpus: list[GPU]) -> None:
        if gpus:
            with self._gpu_lock:  # lowest first, whatever order they come back in
                self._free_gpus = sorted([*self._free_gpus, *gpus], key=lambda g: g.index)


def _gpu_for_execution(gpu: GPU) -> dict:
    """A GPU as the execution's ``site.gpus`` lists it."""
    return {k: getattr(gpu, k) for k in ("index", "vendor", "model", "memory_total", "unified", "ordinal")}


def _news(job: str, result: dict) -> dict:
    """An execution's end, for the registry: its state and timings, the gist of its error."""
    fields = {k: result[k] for k in ("started", "ended", "error_type", "bytes_returned")}
    # The registry needs the gist of an error, not the whole text.
    return protocol.execution_news(
        result["execution"], job, result["state"], error=(result["error"] or "")[-2000:] or None, **fields
    )


def _without_images(output: dict) -> dict:
    """A display with its images replaced by a note: the policy keeps them at the site."""
    data = {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")}
    if len(data) != len(output.get("data", {})):
        data["text/plain"] = "[an image stayed at the site: its policy sets output-images: false]"
    return {**output, "data": data}


def run_execution(spec: dict) -> dict:
    """The Dask task of every execution: hand it to this site's plugin."""
    plugin = get_worker().plugins.get(EdgeSitePlugin.name)
    if plugin is None:
        raise RuntimeError("this Dask worker is not an edge site (no jupyter-edge site plugin)")
    return plugin.execute(spec)
