"""The Fleet API: connect to a fleet, see its sites and datasets, run work at them.

Everything else (the magics, the server extension, the CLI's ``status``) is a
thin layer over this module.
"""

from __future__ import annotations

import getpass
import inspect
import logging
import threading
import time
import traceback
from typing import Any, Callable

import cloudpickle
from dask.utils import parse_timedelta
from distributed import Client
from distributed.client import Future

from . import config
from .catalog import Catalog, DatasetInfo, Site
from .jobs import Execution, JobRecord, SiteLost, State
from .placement import PlacementError, Request
from .result import JobResult
from .scheduler import EdgeSchedulerPlugin
from .site.plugin import EXECUTION_TOPIC, run_execution

__all__ = ["Fleet", "Job"]

logger = logging.getLogger(__name__)


class Fleet:
    """A connection to a fleet of edge sites.

    >>> fleet = Fleet.connect("tcp://127.0.0.1:8786")            # doctest: +SKIP
    >>> res = fleet.run(lambda dataset: len(dataset.files()), data="sensors")  # doctest: +SKIP
    >>> dict(res)                                                 # doctest: +SKIP
    {'berlin': 12, 'paris': 9}
    """

    def __init__(self, client: Client, *, cluster=None):
        self.client = client
        self.cluster = cluster  # an embedded fleet this object owns (Fleet.demo)
        self.address = client.scheduler.address
        self._ensure_scheduler_plugin()

    @classmethod
    def connect(cls, address: str | None = None, *, scheduler_file: str | None = None,
                timeout: float | str | None = None, security=None) -> Fleet:
        """Connect to the fleet at ``address``; without one, ``$JUPYTER_EDGE_SCHEDULER``,
        then ``edge.scheduler-address``."""
        address = config.scheduler_address(address) if scheduler_file is None else address
        if address is None and scheduler_file is None:
            raise ValueError(
                "no fleet to connect to: pass an address (tcp://host:8786) or scheduler_file, "
                f"set ${config.SCHEDULER_ENV} or edge.scheduler-address, or use Fleet.demo()"
            )
        timeout = timeout if timeout is not None else config.get("connect-timeout")
        client = Client(address, scheduler_file=scheduler_file, timeout=timeout, security=security,
                        set_as_default=False)
        try:
            return cls(client)
        except BaseException:
            client.close()
            raise

    @classmethod
    def demo(cls, **kwargs) -> Fleet:
        """A demo fleet with sample data, embedded in this process (see
        :func:`jupyter_edge.demo.start_demo`); closing the Fleet stops it."""
        from .demo import start_demo

        return start_demo(**kwargs)

    def _ensure_scheduler_plugin(self) -> None:
        """A plain ``dask scheduler`` gets the catalog plugin on first contact
        (Dask answers an unknown handler with nothing)."""
        if self._call("edge_catalog") is None:
            self.client.register_plugin(EdgeSchedulerPlugin())

    def _call(self, op: str, **kwargs):
        return self.client.sync(getattr(self.client.scheduler, op), **kwargs)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Fleet {self.address}>"

    # --- what the fleet holds ----------------------------------------------

    def catalog(self) -> Catalog:
        return Catalog.from_dict(self._call("edge_catalog"))

    def sites(self) -> list[Site]:
        """Every site: name, address, state, labels, datasets, GPUs, versions."""
        return sorted(self.catalog(), key=lambda s: s.name)

    def datasets(self) -> dict[str, DatasetInfo]:
        """Dataset name -> its shards, holding sites, bytes, files and kind."""
        return self.catalog().datasets()

    def wait_for_sites(self, count: int, timeout: float = 30) -> list[Site]:
        """Block until at least ``count`` sites have reported (a fleet just started)."""
        deadline = time.monotonic() + timeout
        while True:
            sites = self.sites()
            if len(sites) >= count:
                return sites
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(sites)} of {count} sites reported within {timeout}s: "
                                   f"{', '.join(s.name for s in sites) or 'none'}")
            time.sleep(0.05)

    def jobs(self, limit: int | None = None) -> list[JobRecord]:
        """The fleet's jobs, newest first, as the scheduler's registry has them."""
        return [JobRecord.from_dict(j) for j in self._call("edge_jobs", limit=limit)]

    def job(self, job_id: str) -> JobRecord:
        found = self._call("edge_job", job=job_id)
        if found is None:
            raise KeyError(f"no job {job_id!r} in the fleet's registry")
        return JobRecord.from_dict(found)

    # --- running work --------------------------------------------------------

    def submit(self, fn: Callable, *args, data: str | None = None, where: str | None = None,
               gpus: int = 0, sites=None, all: bool = False, timeout: float | None = None,
               retries: int = 0, kwargs: dict | None = None, source: str | None = None) -> Job:
        """Start ``fn(*args, dataset=..., site=..., **kwargs)`` at every placed site;
        return at once with a :class:`Job`.

        ``fn`` receives ``dataset`` (this site's shard, or ``None``) and ``site``
        if its signature names them. A request no site can satisfy raises
        :class:`PlacementError` before anything runs.
        """
        request = Request.build(data=data, where=where, gpus=gpus, sites=sites, all=all)
        if not request.has_target:
            raise PlacementError(
                "no target: name a dataset (data=NAME), sites (sites=[...]), a label "
                "selector (where='region=eu'), GPUs (gpus=N), or all=True"
            )
        timeout = _seconds(timeout)
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        payload = cloudpickle.dumps((fn, args, kwargs or {}))
        job = Job(self, request, payload, _call_convention(fn), timeout=timeout, retries=retries,
                  source=source or _describe(fn))
        job._start()
        return job

    def run(self, fn: Callable, *args, **options) -> JobResult:
        """:meth:`submit`, then wait: a :class:`JobResult` (site -> value).

        Interrupting it (Ctrl-C) cancels the job at every site.
        """
        job = self.submit(fn, *args, **options)
        try:
            return job.result()
        except KeyboardInterrupt:
            job.cancel()
            raise


def _seconds(timeout) -> float | None:
    """A timeout as seconds: a number, or a Dask duration such as ``"90s"``."""
    if timeout is None:
        return None
    try:
        seconds = parse_timedelta(timeout, default="seconds")
    except (ValueError, TypeError, KeyError):
        seconds = None
    if isinstance(timeout, bool) or seconds is None or seconds <= 0:
        raise ValueError(f"timeout must be a positive number of seconds (or e.g. '90s'), not {timeout!r}")
    return seconds


def _call_convention(fn: Callable) -> dict[str, bool]:
    """Which of ``dataset``/``site`` ``fn`` takes, by name or ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {"dataset": False, "site": False}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    return {name: var_kw or name in params for name in ("dataset", "site")}


def _describe(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module != "__main__" else name


class Job:
    """A running job: ``wait()``, ``cancel()``, ``result()``, ``executions``."""

    def __init__(self, fleet: Fleet, request: Request, payload: bytes, call: dict,
                 timeout: float | None, retries: int, source: str):
        self.fleet = fleet
        self.request = request
        self.source = source
        self.retries = retries
        self.id: str | None = None
        self.deadline = time.time() + timeout if timeout else None
        self._payload = payload
        self._call = call
        self._futures: dict[str, Future] = {}  # execution id -> its task's future
        self._by_id: dict[str, Execution] = {}
        self._values: dict[str, Any] = {}
        self._superseded: set[str] = set()
        self._changed = threading.Condition()
        self._finished = threading.Event()
        self._stop_reason: str | None = None

    # --- life cycle ------------------------------------------------------------

    def _start(self) -> None:
        reply = self.fleet._call("edge_submit", request=self.request.to_dict(), source=self.source,
                                 owner=getpass.getuser())
        if "error" in reply:
            raise PlacementError(reply["error"])
        self.id = reply["job"]
        self._launch(reply["executions"])
        threading.Thread(target=self._supervise, name=f"edge-job-{self.id}", daemon=True).start()

    def _launch(self, executions: list[dict]) -> None:
        client = self.fleet.client
        for data in executions:
            ex = Execution.from_dict(data)
            spec = {"execution": ex.id, "job": ex.job, "payload": self._payload, "call": self._call,
                    "dataset": ex.dataset, "gpus": ex.gpus, "deadline": self.deadline}
            future = client.submit(run_execution, spec, key=ex.key, workers=[ex.address],
                                   allow_other_workers=False, pure=False,
                                   resources={"GPU": ex.gpus} if ex.gpus else None)
            self._by_id[ex.id] = ex
            self._futures[ex.id] = future
            future.add_done_callback(self._notify)

    def _notify(self, _future=None) -> None:
        with self._changed:
            self._changed.notify_all()

    def _supervise(self) -> None:
        """Follow the executions until all are finished, retrying lost ones,
        then collect every result in one gather."""
        handled: set[str] = set()
        try:
            while True:
                with self._changed:
                    unresolved = [i for i, f in self._futures.items() if f.status == "pending"]
                    fresh = [i for i, f in self._futures.items() if f.status != "pending" and i not in handled]
                    if unresolved and not fresh and self._stop_reason is None:
                        wait = None if self.deadline is None else self.deadline - time.time()
                        if wait is None or wait > 0:
                            self._changed.wait(timeout=wait)
                            continue
                if self._stop_reason is not None:
                    self._stop(unresolved, self._stop_reason)
                elif unresolved and not fresh:
                    self._stop(unresolved, State.TIMED_OUT)
                for ex_id in fresh:
                    handled.add(ex_id)
                    self._settle_failure(ex_id)
                if not unresolved and all(i in handled for i in self._futures):
                    break
            self._collect()
        except Exception:
            logger.exception("job %s: supervision failed", self.id)
            for ex in self._by_id.values():
                ex.apply({"state": State.FAILED, "error": traceback.format_exc()})
        finally:
            self._futures.clear()  # let Dask release the results
            self._finished.set()

    def _settle_failure(self, ex_id: str) -> None:
        """A future that ended without a value: lost (maybe retried) or failed."""
        future = self._futures[ex_id]
        if future.status != "error":
            return
        ex = self._by_id[ex_id]
        error = future.exception()
        if isinstance(error, SiteLost):
            ex.apply({"state": State.LOST, "ended": time.time(), "error": str(error),
                      "error_type": "SiteLost"})
            self._retry(ex)
        else:
            text = "".join(traceback.format_exception(type(error), error, future.traceback()))
            ex.apply({"state": State.FAILED, "ended": time.time(), "error": text,
                      "error_type": type(error).__name__})
            self._report(ex)

    def _retry(self, lost: Execution) -> None:
        if lost.attempt > self.retries or self._stop_reason is not None:
            return
        request = dict(self.request.to_dict(), all=False)
        if lost.dataset is not None:
            request["shards"] = [lost.shard]
            tried = {ex.site for ex in self._by_id.values() if ex.shard == lost.shard}
            excludes = [sorted(tried), []]  # another replica first, then any holder
        else:
            request.update(sites=[lost.site], where=None)
            excludes = [[]]
        for exclude in excludes:
            reply = self.fleet._call("edge_submit", request=request, source=self.source,
                                     owner=getpass.getuser(), exclude=exclude, job=self.id,
                                     attempt=lost.attempt + 1)
            if "error" not in reply:
                self._superseded.add(lost.id)
                self._launch(reply["executions"])
                return
        lost.error = f"{lost.error}\nnot retried: {reply['error']}"

    def _stop(self, ex_ids: list[str], reason: State) -> None:
        now = time.time()
        for ex_id in ex_ids:
            ex = self._by_id[ex_id]
            note = "the job's timeout passed" if reason == State.TIMED_OUT else "cancelled from the notebook"
            if ex.apply({"state": reason, "ended": now, "error": note}):
                self._report(ex)
        self.fleet.client.cancel([self._futures[i] for i in ex_ids])

    def _report(self, ex: Execution) -> None:
        """Tell the registry what only this client knows (a timeout, a cancel)."""
        self.fleet.client.log_event(EXECUTION_TOPIC, {
            "execution": ex.id, "job": ex.job, "state": ex.state.value, "ended": ex.ended,
            "error": (ex.error or "")[-2000:] or None,
        })

    def _collect(self) -> None:
        finished = {i: f for i, f in self._futures.items() if f.status == "finished"}
        outcomes = self.fleet.client.gather(list(finished.values()), errors="skip")
        for ex_id, outcome in zip(finished, outcomes):
            ex = self._by_id[ex_id]
            ex.outputs = outcome["outputs"]
            fields = {k: outcome[k] for k in ("state", "started", "ended", "error", "error_type", "bytes_returned")}
            ex.apply(fields)
            if ex.state == State.DONE:
                try:
                    self._values[ex_id] = cloudpickle.loads(outcome["value"])
                except Exception as e:
                    ex.state, ex.error_type = State.FAILED, type(e).__name__
                    ex.error = f"the value arrived but cannot be unpickled in this process: {e!r}"

    # --- the public face ------------------------------------------------------

    @property
    def executions(self) -> list[Execution]:
        """Every execution of this job, retries included, in launch order."""
        return list(self._by_id.values())

    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every execution is finished; False if ``timeout`` passed first."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Stop the job at every site; finished results are kept."""
        with self._changed:
            if self._stop_reason is None:
                self._stop_reason = State.CANCELLED
            self._changed.notify_all()
        self._finished.wait()

    def result(self, timeout: float | None = None) -> JobResult:
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self.id} still running after {timeout}s")
        return JobResult(self.id, self.executions, self._values, self._superseded)

    @property
    def state(self) -> str:
        """``running``, then the job's outcome as the registry names it."""
        if not self.done():
            return "running"
        return JobRecord(self.id, self.source, {}, "", 0, self.executions).state

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.state}: {len(self._by_id)} execution(s), {self.request.describe()}>"
