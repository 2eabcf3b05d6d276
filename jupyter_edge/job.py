"""A running job, from the notebook's side: its tasks, their supervision, its result.

One Dask task per execution, pinned to its site. The job follows them until
each is finished: a lost one is retried if asked, the timeout stops the rest,
and every finished result is collected in one gather.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import cloudpickle
import dask
import distributed
from dask import delayed
from distributed.client import FIRST_COMPLETED, Future, FuturesCancelledError

from .chunked import StreamingValue, ValueIncomplete
from .jobs import Execution, JobRecord, SiteLost, State
from .placement import Placement, PlacementError, Request
from .protocol import (
    ANNOTATION,
    EXECUTION_TOPIC,
    QUEUE_HANDLER,
    execution_news,
    gpu_resource,
    job_annotation,
    value_ack,
)
from .result import JobResult
from .site.plugin import run_execution

if TYPE_CHECKING:
    from .fleet import Fleet

__all__ = ["Job"]

logger = logging.getLogger(__name__)

#: Up to this many executions go as separate submits; more, as one graph.
#: Building a graph costs the client about a millisecond; each extra submit
#: can wait for the next batch of the client's stream (measured in benchmarks/).
_SUBMIT_AT_MOST = 2
#: How often (seconds) a job with queued executions looks at the fleet again at least.
_QUEUE_POLL = 0.5


class Job:
    """A running job: ``wait()``, ``cancel()``, ``result()``, ``executions``."""

    def __init__(
        self,
        fleet: Fleet,
        request: Request,
        work: dict,
        timeout: float | None,
        retries: int,
        source: str,
        owner: str,
        on_output=None,
        queue_timeout: float | None = None,
    ):
        self.fleet = fleet
        self.request = request
        self.source = source
        self.owner = owner
        self.retries = retries
        self.id = secrets.token_hex(4)
        self.created = time.time()
        self.deadline = self.created + timeout if timeout else None
        # Executions that wait for offline sites, until one rejoins or this passes.
        self.queue_timeout = queue_timeout
        self.queue_deadline = self.created + queue_timeout if queue_timeout else None
        self._queued: dict[str, Execution] = {}
        self._busy: set[str] = set()  # sent, but queued at a site whose slots were all taken
        self._waiting_for: dict[str, tuple[str, ...]] = {}  # queued execution -> the offline sites it waits for
        self._queue_woken = threading.Event()  # a cancel, or news that the catalog changed
        self._queue_catalog_seen = -1
        self._queue_tried_at = 0.0
        self._counted: set[str] = set()  # executions counted in the fleet's in-flight load
        self._work = work  # {"payload", "call"} for a function, {"cell"} for a cell
        self._futures: dict[str, Future] = {}  # execution id -> its task's future
        self._by_id: dict[str, Execution] = {}
        self._values: dict[str, Any] = {}
        # What sites sent on their own streams (nothing is gathered from a site):
        self._outcomes: dict[str, dict] = {}  # execution id -> its outcome, sent with its task's end
        self._outputs: dict[str, list[dict]] = {}  # execution id -> its output, batch by batch
        self._values_coming: dict[str, StreamingValue] = {}  # execution id -> its large value, arriving
        self._superseded: set[str] = set()
        self._handled: set[str] = set()
        self._lock = threading.Lock()  # _futures is read by cancel() from other threads
        self._finished = threading.Event()
        self._stop_reason: State | None = None
        #: Called as ``on_output(site, outputs)`` for each batch of output while
        #: the job runs (on the client's event loop: be quick).
        self.on_output = on_output
        #: Called as ``on_state(execution)`` when an execution's state changes.
        self.on_state = None

    # --- starting ----------------------------------------------------------------

    def start(self, placement: Placement, supervise_in_thread: bool = True) -> None:
        """Launch the job's tasks; each carries its execution's record as a Dask
        annotation, from which the scheduler plugin registers the job as the
        tasks arrive: no round trip of its own."""
        self.fleet._live[self.id] = self
        self._launch(self._executions(placement, attempt=1))
        if supervise_in_thread:
            threading.Thread(target=self.supervise, name=f"edge-job-{self.id}", daemon=True).start()

    def _executions(self, placement: Placement, attempt: int) -> list[Execution]:
        now = time.time()
        first = len(self._by_id)
        for i, t in enumerate(placement.targets):
            if t.queued:
                self._waiting_for[f"{self.id}.{first + i}"] = t.waiting_for
        return [
            Execution(
                id=f"{self.id}.{first + i}",
                job=self.id,
                site=t.site,
                address=t.address,
                dataset=t.dataset,
                shard=t.shard,
                gpus=t.gpus,
                attempt=attempt,
                submitted=now,
                state=State.QUEUED if t.queued else State.PENDING,
                error=f"waiting for {', '.join(t.waiting_for)} (offline) to rejoin" if t.queued else None,
            )
            for i, t in enumerate(placement.targets)
        ]

    def _header(self) -> dict:
        """What the registry records of the job itself."""
        return {
            "id": self.id,
            "source": self.source,
            "request": self.request.to_dict(),
            "owner": self.owner,
            "created": self.created,
        }

    def _annotation(self, ex: Execution) -> dict:
        return job_annotation(self._header(), ex.to_dict(outputs=False))

    def _spec(self, ex: Execution) -> dict:
        return {
            "execution": ex.id,
            "job": ex.job,
            "owner": self.owner,
            **self._work,
            "dataset": ex.dataset,
            "gpus": ex.gpus,
            "gpu_vendors": self.request.gpu_vendors,
            "deadline": self.deadline,
        }

    def _resources(self, ex: Execution) -> dict | None:
        """The Dask resources an execution holds while it runs: its GPUs, and those
        of its vendor when it names one (a site with several vendors counts each)."""
        if not ex.gpus:
            return None
        vendors = self.request.gpu_vendors
        return {"GPU": ex.gpus, **({gpu_resource(vendors[0]): ex.gpus} if vendors and len(vendors) == 1 else {})}

    def _launch(self, executions: list[Execution]) -> None:
        queued = [ex for ex in executions if ex.state == State.QUEUED]
        if queued:
            for ex in queued:
                self._by_id[ex.id] = ex
                self._queued[ex.id] = ex
            # They have no task yet: the registry learns of them, and why they wait, now.
            self.fleet._call(QUEUE_HANDLER, job=self._header(), executions=[ex.to_dict(outputs=False) for ex in queued])
        executions = [ex for ex in executions if ex.state != State.QUEUED]
        if not executions:
            return
        if self.queue_deadline is not None:
            self._mark_busy(executions)
        client = self.fleet.client
        for ex in executions:
            self._by_id[ex.id] = ex
            self._counted.add(ex.id)
            self.fleet._in_flight(ex.site, +1)
        if len(executions) <= _SUBMIT_AT_MOST:
            futures = []
            for ex in executions:
                with dask.annotate(**{ANNOTATION: self._annotation(ex)}):
                    futures.append(
                        client.submit(
                            run_execution,
                            self._spec(ex),
                            key=ex.key,
                            workers=[ex.address],
                            allow_other_workers=False,
                            pure=False,
                            resources=self._resources(ex),
                        )
                    )
        else:
            # One graph, one message to the scheduler: more separate submits
            # would wait for the client's stream batches one after another.
            tasks = []
            for ex in executions:
                pinned = {"workers": [ex.address], "allow_other_workers": False, ANNOTATION: self._annotation(ex)}
                if ex.gpus:
                    pinned["resources"] = self._resources(ex)
                with dask.annotate(**pinned):
                    tasks.append(delayed(run_execution, pure=False)(self._spec(ex), dask_key_name=ex.key))
            futures = client.compute(tasks, optimize_graph=False)
        with self._lock:
            for ex, future in zip(executions, futures, strict=True):
                self._futures[ex.id] = future

    # --- following it ------------------------------------------------------------

    def supervise(self, stop: bool = False) -> None:
        """Follow the executions until all are finished, then collect the
        results. An interrupt (Ctrl-C) cancels what is left, then re-raises;
        ``stop``: cancel what is left now (an interrupt came before this)."""
        if stop:
            self._stop_reason = State.CANCELLED
        try:
            self._follow()
            self._collect()
        except KeyboardInterrupt:
            self._stop_reason = State.CANCELLED
            self._follow()
            self._collect()
            raise
        except Exception:
            logger.exception("job %s: supervision failed", self.id)
            for ex in self._by_id.values():
                ex.apply({"state": State.FAILED, "error": traceback.format_exc()})
        finally:
            for ex_id in self._counted:
                self.fleet._in_flight(self._by_id[ex_id].site, -1)
            self._futures.clear()  # let Dask release the results
            self.fleet._live.pop(self.id, None)
            self._finished.set()

    def _on_state(self, msg: dict) -> None:
        ex = self._by_id.get(msg["execution"])
        if ex is None or ex.finished or not ex.apply({k: v for k, v in msg.items() if k != "site"}):
            return
        if self.on_state is not None:
            try:
                self.on_state(ex)
            except Exception:
                logger.exception("job %s: state handler failed", self.id)

    def _on_output(self, execution: str, site: str, outputs: list[dict]) -> None:
        self._outputs.setdefault(execution, []).extend(outputs)
        if self.on_output is not None:
            try:
                self.on_output(site, outputs)
            except Exception:  # a display that fails must not stop the job
                logger.exception("job %s: live output handler failed", self.id)

    def _on_value_chunk(self, msg: dict) -> None:
        """A chunk of a large value (on the client's event loop): keep it, and say so,
        which lets the site send another (see site/transfer.py)."""
        value = self._values_coming.get(msg["execution"])
        if value is None:
            value = self._values_coming[msg["execution"]] = StreamingValue()
        if msg["seq"] != value.chunks:  # a stream keeps order; anything else is a bug upstream
            logger.error("job %s: chunk %s of %s arrived out of order", self.id, msg["seq"], msg["execution"])
            return
        value.add(msg["data"])
        self.fleet.client._send_to_scheduler(value_ack(self.id, msg["execution"], msg["seq"]))

    def _follow(self) -> None:
        while True:
            with self._lock:
                futures = dict(self._futures)
            pending = {i: f for i, f in futures.items() if f.status == "pending"}
            fresh = [i for i, f in futures.items() if f.status != "pending" and i not in self._handled]
            waiting = bool(pending or self._queued)
            if waiting and not fresh and self._stop_reason is None:
                wait = None if self.deadline is None else self.deadline - time.time()
                if wait is None or wait > 0:
                    if self._queued or self._busy:  # look again at least this often
                        wait = _QUEUE_POLL if wait is None else min(wait, _QUEUE_POLL)
                    if pending:
                        # Dask's own wait: woken on its event loop, as ``.result()`` is.
                        try:
                            with self.fleet.client.as_current():  # not whatever client is the default
                                distributed.wait(list(pending.values()), timeout=wait, return_when=FIRST_COMPLETED)
                        except (TimeoutError, FuturesCancelledError):
                            pass
                    else:
                        self._queue_woken.wait(wait)
                        self._queue_woken.clear()
                    if self._queued and self._stop_reason is None:
                        self._try_queued()
                    self._check_busy()
                    continue
            if self._stop_reason is not None:
                self._stop(list(pending), self._stop_reason)
                self._unqueue(self._stop_reason)
            elif waiting and not fresh:
                self._stop(list(pending), State.TIMED_OUT)
                self._unqueue(State.TIMED_OUT)
            for ex_id in fresh:
                self._handled.add(ex_id)
                self._settle(ex_id)
            if (
                not pending
                and not self._queued
                and all(i in self._handled for i in futures)
                and len(futures) == len(self._futures)
            ):
                return

    # --- waiting for offline sites ---------------------------------------------------

    def _try_queued(self) -> None:
        """Launch each queued execution whose site (or a holder of its shard) is back;
        fail those whose queue timeout passed. Placement is tried again when the fleet
        announces a change, and every few seconds in case an announcement was missed."""
        now = time.time()
        if self.queue_deadline is not None and now >= self.queue_deadline:
            for ex in list(self._queued.values()):
                what = f"shard {ex.shard!r} of {ex.dataset!r}" if ex.dataset else f"the work for {ex.site}"
                ex.apply(
                    {
                        "state": State.FAILED,
                        "ended": now,
                        "error_type": "QueueTimeout",
                        "error": f"{what} waited {self.queue_timeout:g} s for "
                        f"{', '.join(self._waiting_for.get(ex.id, (ex.site,)))} (offline): the queue timeout passed",
                    }
                )
                self._report(ex)
                del self._queued[ex.id]
            return
        version = self.fleet._catalog_version
        if version == self._queue_catalog_seen and now - self._queue_tried_at < 5:
            return
        self._queue_catalog_seen, self._queue_tried_at = version, now
        ready = []
        for ex in list(self._queued.values()):
            try:
                placement = self.fleet._place(self._request_for(ex))
            except PlacementError:
                continue  # still away
            target = placement.targets[0]
            ex.site, ex.address, ex.state, ex.error, ex.submitted = (
                target.site,
                target.address,
                State.PENDING,
                None,
                now,
            )
            del self._queued[ex.id]
            ready.append(ex)
            if self.on_state is not None:
                self.on_state(ex)
        if ready:
            self._launch(ready)

    def _mark_busy(self, executions: list[Execution]) -> None:
        """With a queue timeout, an execution placed at a site whose slots are all
        taken is ``queued`` (with why) until it starts there; Dask holds its task."""
        catalog = self.fleet.catalog(fresh=False)
        for ex in executions:
            site = catalog.sites.get(ex.site)
            if site is None:
                continue
            with self.fleet._lock:
                busy = site.running + self.fleet._running[ex.site]
            if busy >= site.nthreads:
                ex.state, ex.error = State.QUEUED, f"waiting for a free slot at {ex.site} ({busy} running)"
                self._busy.add(ex.id)

    def _check_busy(self) -> None:
        """Past the queue timeout, what still waits for a busy site fails (and its task goes)."""
        if not self._busy or self.queue_deadline is None or time.time() < self.queue_deadline:
            return
        stale = []
        for ex_id in list(self._busy):
            ex = self._by_id[ex_id]
            if ex.state == State.QUEUED and ex.apply(
                {
                    "state": State.FAILED,
                    "ended": time.time(),
                    "error_type": "QueueTimeout",
                    "error": f"waited {self.queue_timeout:g} s for a free slot at {ex.site}: the queue timeout passed",
                }
            ):
                self._report(ex)
                stale.append(ex_id)
            self._busy.discard(ex_id)
        with self._lock:
            futures = [self._futures[i] for i in stale if i in self._futures]
        if futures:
            self.fleet.client.cancel(futures)

    def _request_for(self, ex: Execution) -> Request:
        """What a queued execution asks for now: its shard (any holder), or its site."""
        if ex.dataset is not None and self.request.sites is None:
            return Request(
                data=ex.dataset,
                where=self.request.where,
                gpus=self.request.gpus,
                shards=(ex.shard,),
                executor=self.request.executor,
            )
        return Request(data=ex.dataset, sites=(ex.site,), gpus=self.request.gpus, executor=self.request.executor)

    def _unqueue(self, reason: State) -> None:
        """A stop (cancel, interrupt, the job's timeout) ends the queued executions too."""
        now = time.time()
        note = "the job's timeout passed" if reason == State.TIMED_OUT else "cancelled from the notebook"
        for ex in list(self._queued.values()):
            if ex.apply({"state": reason, "ended": now, "error": f"{note} while it waited: {ex.error}"}):
                self._report(ex)
            del self._queued[ex.id]

    def _settle(self, ex_id: str) -> None:
        """A future that ended without a value: lost (maybe retried), failed or
        cancelled; one with a value waits for the gather."""
        future = self._futures[ex_id]
        ex = self._by_id[ex_id]
        if future.status == "cancelled":
            if ex.apply({"state": State.CANCELLED, "ended": time.time(), "error": "its task was cancelled"}):
                self._report(ex)
            return
        if future.status != "error":
            return
        error = future.exception()
        if isinstance(error, SiteLost):
            ex.apply({"state": State.LOST, "ended": time.time(), "error": str(error), "error_type": "SiteLost"})
            self._retry(ex)
        else:
            text = "".join(traceback.format_exception(type(error), error, future.traceback()))
            ex.apply({"state": State.FAILED, "ended": time.time(), "error": text, "error_type": type(error).__name__})
            self._report(ex)

    def _retry(self, lost: Execution) -> None:
        """Run a lost execution again: another replica of its shard first, then
        any holder (the same site, if it came back); a site target, there only."""
        if lost.attempt > self.retries or self._stop_reason is not None:
            return
        if lost.dataset is not None:
            request = Request(
                data=self.request.data, where=self.request.where, gpus=self.request.gpus, shards=(lost.shard,)
            )
            tried = {ex.site for ex in self._by_id.values() if ex.shard == lost.shard}
            excludes = [tried, ()]
        else:
            request = Request(sites=(lost.site,), gpus=self.request.gpus)
            excludes = [()]
        error = None
        for exclude in excludes:
            try:
                placement = self.fleet._place(request, exclude=exclude, refresh=True)
            except PlacementError as e:
                error = e
                continue
            self._superseded.add(lost.id)
            self._launch(self._executions(placement, attempt=lost.attempt + 1))
            return
        lost.error = f"{lost.error}\nnot retried: {error}"

    def _stop(self, ex_ids: list[str], reason: State) -> None:
        now = time.time()
        note = "the job's timeout passed" if reason == State.TIMED_OUT else "cancelled from the notebook"
        for ex_id in ex_ids:
            ex = self._by_id[ex_id]
            if ex.apply({"state": reason, "ended": now, "error": note}):
                self._report(ex)
        if ex_ids:
            with self._lock:
                futures = [self._futures[i] for i in ex_ids if i in self._futures]
            self.fleet.client.cancel(futures)

    def _report(self, ex: Execution) -> None:
        """Tell the registry what only this client knows (a timeout, a cancel)."""
        self.fleet.client.log_event(
            EXECUTION_TOPIC,
            execution_news(ex.id, ex.job, ex.state.value, ended=ex.ended, error=(ex.error or "")[-2000:] or None),
        )

    def _collect(self) -> None:
        """Each finished execution's result, from what its site sent over its own
        connection: the outcome with the task's end, a large value in chunks before it."""
        for ex_id, ex in self._by_id.items():
            ex.outputs = self._outputs.pop(ex_id, [])
            coming = self._values_coming.pop(ex_id, None)
            try:
                self._collect_one(ex, coming)
            finally:
                if coming is not None:
                    coming.discard()  # a no-op once its value is in

    def _collect_one(self, ex: Execution, coming: StreamingValue | None) -> None:
        future = self._futures.get(ex.id)
        if future is None or future.status != "finished":
            return
        outcome = self._outcomes.pop(ex.id, None)
        if outcome is None:  # a finished task always sends its outcome first, on the same stream
            ex.apply(
                {
                    "state": State.FAILED,
                    "ended": time.time(),
                    "error_type": "ResultLost",
                    "error": "the site finished, but its result never reached this notebook",
                }
            )
            return
        ex.apply({k: outcome[k] for k in ("state", "started", "ended", "error", "error_type", "bytes_returned")})
        if ex.state != State.DONE:
            return
        try:
            if outcome["value"] is not None:
                self._values[ex.id] = cloudpickle.loads(outcome["value"])
            elif coming is None:
                raise ValueIncomplete(f"the value arrived incomplete: 0 of {outcome['bytes_returned']:,} bytes")
            else:
                self._values[ex.id] = coming.result(outcome["bytes_returned"])
        except ValueIncomplete as e:
            ex.state, ex.error_type, ex.error = State.FAILED, "ResultLost", str(e)
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
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = State.CANCELLED
            pending = [i for i, f in self._futures.items() if f.status == "pending"]
        self._stop(pending, State.CANCELLED)  # also wakes the supervisor, waiting on these
        self._queue_woken.set()  # or on the queue
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
