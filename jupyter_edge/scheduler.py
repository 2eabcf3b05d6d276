"""The scheduler plugin: the fleet's catalog and job registry.

Sites report themselves on the ``edge-site`` topic and their executions on
``edge-execution``. A job registers with its tasks: each carries its
execution's record in the ``edge`` Dask annotation, read here as the graph
arrives, so registering costs no round trip. Clients read the catalog and jobs
through its handlers (``edge_catalog``, ``edge_jobs``, ``edge_job``). Every change
to what placement depends on is announced on ``edge-catalog``, so clients can
keep a cached catalog. Every message's shape is in :mod:`jupyter_edge.protocol`.

A site that leaves, or stays silent longer than ``edge.liveness``, has its
unfinished executions marked ``lost`` and their tasks failed with
:class:`~jupyter_edge.jobs.SiteLost`, so they never run again, there or
anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict

from distributed import SchedulerPlugin
from distributed.protocol.pickle import dumps as pickle_dumps
from distributed.protocol.serialize import Serialized
from distributed.scheduler import heartbeat_interval
from tornado.ioloop import PeriodicCallback

from . import config
from .jobs import TERMINAL, Execution, JobRecord, SiteLost, State
from .protocol import (
    ANNOTATION,
    CANCEL_HANDLER,
    CATALOG_HANDLER,
    CATALOG_TOPIC,
    EXECUTION_TOPIC,
    JOB_HANDLER,
    JOB_TOPIC,
    JOBS_HANDLER,
    OUTPUT_OP,
    QUEUE_HANDLER,
    RESET_HANDLER,
    SESSIONS_DROPPED_OP,
    SITE_TOPIC,
    VALUE_ACK_OP,
    Kind,
    catalog_changed,
    drop_sessions,
    execution_of,
    is_site_report,
    job_event,
    state_news,
    value_ack,
)
from .state import HubState

logger = logging.getLogger(__name__)

_LOST_REASON = "it left the fleet or stopped answering while the execution was unfinished"


def liveness_limit(configured: float, sites: int) -> float:
    """How long a site may be silent: ``edge.liveness``, but never under three of the
    heartbeat intervals Dask asks of a fleet this size (0.5 s up to 10 sites, then
    2 s, then ``n / 200 + 1`` s past 200: 51 s at 10,000 sites), or a large fleet
    would remove sites that are only waiting for their turn to beat."""
    return max(configured, 3 * heartbeat_interval(sites))


class EdgeSchedulerPlugin(SchedulerPlugin):
    name = "jupyter-edge"
    idempotent = True

    def __init__(self, state_dir: str | None = None):
        # Where the hub keeps its memory across restarts (None: nowhere, e.g. an embedded fleet).
        self.state_dir = state_dir
        self.state: HubState | None = None
        self._changed_sites: set[str] = set()  # to be saved at the next flush
        self._changed_jobs: set[str] = set()
        self._forgotten: tuple[set[str], set[str]] = (set(), set())  # sites, jobs
        self._sites_saved_at = 0.0
        self.reports: dict[str, dict] = {}  # worker address -> the site's last report
        self.jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self.executions: dict[str, Execution] = {}  # unfinished, by id
        self.owners: dict[str, str] = {}  # job id -> the Dask client that submitted it
        self.catalog_version = 0
        # Sites that have left, by name: their last report, last seen, since when and why
        # they are offline. Kept until edge.forget-after; a site that rejoins is removed.
        self.offline: dict[str, dict] = {}
        self._leaving: dict[str, str] = {}  # worker address -> why the plugin removed it
        self._seen: dict[str, float] = {}  # worker address -> its last heartbeat, as of the last check
        self._resets: dict[str, dict] = {}  # request -> the sites yet to answer, and their answers
        self._relaying: dict[str, dict[int, Serialized]] = {}  # execution -> its chunks on their way
        self.scheduler = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        # Stream ops: from sites (output, outcomes, value chunks, sessions dropped) and
        # from clients (value chunks received), on the connections each opened.
        scheduler.stream_handlers[OUTPUT_OP] = self.handle_output
        scheduler.stream_handlers[VALUE_ACK_OP] = self.handle_value_ack
        scheduler.stream_handlers[SESSIONS_DROPPED_OP] = self.handle_sessions_dropped
        scheduler.handlers.update(
            {
                CATALOG_HANDLER: self.handle_catalog,
                JOBS_HANDLER: self.handle_jobs,
                JOB_HANDLER: self.handle_job,
                CANCEL_HANDLER: self.handle_cancel_request,
                RESET_HANDLER: self.handle_reset,
                QUEUE_HANDLER: self.handle_queued,
            }
        )
        if self.state_dir:
            self._restore(HubState(self.state_dir))
        # Sites that reported before this plugin was installed are not forgotten.
        for _, msg in scheduler.get_events(SITE_TOPIC):
            self.log_event(SITE_TOPIC, msg)
        liveness = config.seconds("liveness")
        callback = PeriodicCallback(self.check_liveness, min(1.0, liveness / 4) * 1000)
        scheduler.periodic_callbacks["edge-liveness"] = callback
        callback.start()

    # --- what sites and clients tell us ---------------------------------

    def log_event(self, topic: str, msg) -> None:
        if topic == SITE_TOPIC and is_site_report(msg):
            address = msg.get("worker") or msg["site"]["address"]
            if address in self.scheduler.workers:
                self.reports[address] = msg["site"]
                self.offline.pop(msg["site"]["name"], None)  # it is back
                self._changed_sites.add(msg["site"]["name"])
                self._catalog_changed()
        elif topic == EXECUTION_TOPIC:
            execution = self.executions.get(msg.get("execution"))
            if execution is None and msg.get("execution"):  # a queued one ending before it was sent
                queued = self._find(msg["execution"])
                execution = queued if queued is not None and queued.state == State.QUEUED else None
            if execution is not None and execution.apply(msg):
                self._changed_jobs.add(execution.job)
                if execution.finished:
                    self.executions.pop(execution.id, None)
                self._to_owner(
                    execution.job,
                    state_news(
                        execution.job,
                        execution.id,
                        execution.site,
                        execution.state.value,
                        execution.started,
                        execution.ended,
                    ),
                )

    def update_graph(self, scheduler, *, client=None, annotations=None, **kwargs) -> None:
        """Register the executions whose tasks just arrived (see ``ANNOTATION``).
        Over TLS a job's owner is its client's certificate, whatever it claims."""
        for carried in ((annotations or {}).get(ANNOTATION) or {}).values():
            record = self._record(carried["job"], client)
            ex = self._add_execution(record, Execution.from_dict(carried["execution"]))
            self.executions[ex.id] = ex
            if ex.address not in self.scheduler.workers:  # placed from a catalog older than a departure
                self._mark_lost(ex)

    def _record(self, header: dict, client=None, comm=None) -> JobRecord:
        """The job's record, made on its first news. Over TLS its owner is the
        client's certificate (its stream's, or the request's ``comm``), whatever it claims."""
        if client is not None:
            self.owners[header["id"]] = client
        record = self.jobs.get(header["id"])
        if record is None:
            verified = peer_identity(comm) if comm is not None else self._client_identity(client)
            owner = verified or header["owner"]
            record = JobRecord(header["id"], header["source"], header["request"], owner, header["created"])
            if verified and header["owner"] != verified:
                self.scheduler.loop.add_callback(
                    self.handle_cancel,
                    header["id"],
                    verified,
                    f"refused: the job claims owner {header['owner']!r}, its certificate says {verified!r}",
                )
            self.jobs[record.id] = record
            self._forget_old_jobs()
        return record

    def _add_execution(self, record: JobRecord, ex: Execution) -> Execution:
        """An execution's record; one that was queued is replaced by its launch."""
        same = [i for i, known in enumerate(record.executions) if known.id == ex.id]
        if same:
            record.executions[same[0]] = ex
        else:
            record.executions.append(ex)
        self._changed_jobs.add(record.id)
        return ex

    def handle_queued(self, comm, job: dict, executions: list[dict]) -> None:
        """``edge_queue``: executions waiting for offline sites, so that the registry
        (``%edge jobs``, the sidebar) shows them and why they wait. They have no
        task yet: their launch registers them again, with their site."""
        record = self._record(job, comm=comm)
        for data in executions:
            self._add_execution(record, Execution.from_dict(data))

    def handle_output(self, job: str, **msg) -> None:
        """A batch of a running execution's output, a chunk of its value, or its
        outcome: straight on to its client."""
        if msg.get("kind") == Kind.VALUE and isinstance(msg.get("data"), Serialized):
            self._relaying.setdefault(msg["execution"], {})[msg["seq"]] = msg["data"]
        self._to_owner(job, job_event({"job": job, **msg}))

    def handle_value_ack(self, job: str, execution: str, seq: int, client: str | None = None, **_) -> None:
        """A client has a chunk of a value: the site may send another (on its own stream)."""
        ex = self.executions.get(execution)
        if ex is None or self.owners.get(job) != client:
            return
        self._let_go(execution, seq)
        if ex.address not in self.scheduler.stream_comms:
            return
        self.scheduler.worker_send(ex.address, value_ack(job, execution, seq))

    async def handle_reset(self, sessions: list[str], timeout: float = 10.0) -> dict:
        """``edge_reset``: every site forgets ``sessions``' names. Asked and answered on
        the sites' own streams; a site that does not answer within ``timeout`` is named."""
        request = secrets.token_hex(6)
        asked = {a: r["name"] for a, r in self.reports.items() if a in self.scheduler.stream_comms}
        waiting = {"pending": set(asked.values()), "dropped": {}, "answered": asyncio.Event()}
        self._resets[request] = waiting
        try:
            for address in asked:
                self.scheduler.worker_send(address, drop_sessions(request, sessions))
            if waiting["pending"]:
                await asyncio.wait_for(waiting["answered"].wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._resets.pop(request, None)
        return {"dropped": waiting["dropped"], "unanswered": sorted(waiting["pending"])}

    def handle_sessions_dropped(self, request: str, site: str, count: int, **_) -> None:
        waiting = self._resets.get(request)
        if waiting is not None:
            waiting["dropped"][site] = count
            waiting["pending"].discard(site)
            if not waiting["pending"]:
                waiting["answered"].set()

    def _let_go(self, execution: str, seq: int) -> None:
        """The client has chunks up to ``seq``: drop their bytes here now. Dask's
        stream reader keeps the last message it read until the next one comes, so
        without this a relayed chunk would stay in memory one window longer."""
        relaying = self._relaying.get(execution, {})
        for done in [s for s in relaying if s <= seq]:
            relaying.pop(done).frames = []
        if not relaying:
            self._relaying.pop(execution, None)

    def _to_owner(self, job: str, msg: dict) -> None:
        """Live news of a job (output, states) for the client that submitted it, and no one else."""
        client = self.owners.get(job)
        if client in self.scheduler.client_comms:
            event = {"op": "event", "topic": JOB_TOPIC, "event": (time.time(), msg)}
            self.scheduler.send_all({client: [event]}, worker_msgs={})

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        report = self.reports.pop(worker, None)
        why = self._leaving.pop(worker, "its connection to the scheduler closed")
        seen = self._seen.pop(worker, None)
        if report is not None:
            now = time.time()
            self.offline[report["name"]] = {
                **report,
                "state": "offline",
                "last_seen": seen or now,
                "offline_since": now,
                "offline_reason": why,
                "running": 0,
                "rtt": None,
            }
            self._changed_sites.add(report["name"])
            self._catalog_changed()
        for ex in [ex for ex in self.executions.values() if ex.address == worker]:
            self._mark_lost(ex)
        # Their tasks now wait for a worker that is gone ("no-worker"):
        # transition() below fails them.

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        execution_id = execution_of(key)
        if execution_id is None:
            return
        if finish in ("memory", "erred", "forgotten", "released"):
            self._relaying.pop(execution_id, None)  # what is on its way is Dask's to hold now
        if finish == "no-worker":
            # Never from inside a transition: fail it once this one is done.
            self.scheduler.loop.add_callback(self._fail_unrunnable, key)
        elif finish == "erred":
            # Dask-level failures (the site plugin missing, a task that could not
            # be unpickled); the user's own errors come back as values instead.
            execution = self.executions.pop(execution_id, None)
            if execution is not None:
                self._changed_jobs.add(execution.job)
                execution.apply(
                    {
                        "state": State.FAILED,
                        "ended": time.time(),
                        "error": kwargs.get("exception_text") or "the task failed at the site",
                    }
                )
        elif finish == "forgotten":
            # A client that cancels, times out or disconnects releases its tasks.
            execution = self.executions.pop(execution_id, None)
            if execution is not None:
                self._changed_jobs.add(execution.job)
                execution.apply(
                    {
                        "state": State.CANCELLED,
                        "ended": time.time(),
                        "error": "released by the notebook before it finished",
                    }
                )

    def _mark_lost(self, ex: Execution) -> None:
        self._changed_jobs.add(ex.job)
        ex.apply({"state": State.LOST, "ended": time.time(), "error": str(SiteLost(ex.site, _LOST_REASON))})
        self.executions.pop(ex.id, None)

    def _fail_unrunnable(self, key: str) -> None:
        """Fail an edge task whose site is gone, as Dask itself fails tasks
        that outwait ``no-workers-timeout``."""
        ts = self.scheduler.tasks.get(key)
        if ts is None or ts.state != "no-worker":
            return
        restricted = ts.worker_restrictions or set()
        if restricted & set(self.scheduler.workers):
            return
        ex = self._find(execution_of(key))
        site = ex.site if ex else next(iter(restricted), "unknown")
        if ex is not None:
            self._mark_lost(ex)
        stimulus_id = f"edge-site-lost-{time.time()}"
        try:
            recommendations = self.scheduler.transition(
                key, "erred", exception=pickle_dumps(SiteLost(site, _LOST_REASON)), cause=key, stimulus_id=stimulus_id
            )
            self.scheduler.transitions(recommendations, stimulus_id=stimulus_id)
        except Exception:
            logger.exception("could not fail task %s of lost site %s", key, site)

    def _find(self, execution_id: str) -> Execution | None:
        found = self.executions.get(execution_id)
        if found is None:
            record = self.jobs.get(execution_id.split(".", 1)[0])
            found = next((ex for ex in record.executions if ex.id == execution_id), None) if record else None
        return found

    async def check_liveness(self) -> None:
        """Remove sites silent for longer than ``edge.liveness`` (frozen, cut off)."""
        limit = liveness_limit(config.seconds("liveness"), len(self.scheduler.workers))
        now = time.time()
        for address in list(self.reports):
            ws = self.scheduler.workers.get(address)
            if ws is not None:
                self._seen[address] = ws.last_seen  # a departure's "last seen": Dask forgets it first
            if ws is not None and now - ws.last_seen > limit:
                logger.warning(
                    "site %s silent for %.1fs (edge.liveness %gs): removing it",
                    self.reports[address]["name"],
                    now - ws.last_seen,
                    limit,
                )
                self._leaving[address] = f"silent for {now - ws.last_seen:.0f} s (edge.liveness {limit:g} s)"
                await self.scheduler.remove_worker(address, stimulus_id=f"edge-liveness-{now}", close=True)
        self._forget_offline(now)
        self._flush(now)

    # --- the hub's memory (see state.py) ------------------------------------

    def _restore(self, state: HubState) -> None:
        """What the hub knew before it (re)started: every site offline until it
        rejoins, every job record; what was unfinished then ends ``lost``."""
        self.state = state
        now = time.time()
        for name, model in state.sites().items():
            if model.get("state") != "offline":
                model.update(
                    state="offline",
                    offline_since=now,
                    running=0,
                    rtt=None,
                    offline_reason="not back yet since the scheduler restarted",
                )
            self.offline[name] = model
            self._changed_sites.add(name)
        for data in state.jobs():
            record = JobRecord.from_dict(data)
            for ex in record.executions:
                if not ex.finished:
                    ex.apply(
                        {"state": State.LOST, "ended": now, "error": "the scheduler restarted while it was unfinished"}
                    )
                    self._changed_jobs.add(record.id)
            self.jobs[record.id] = record
        if self.offline:
            self._catalog_changed()

    def _flush(self, now: float) -> None:
        """Save what changed since the last flush (about once a second); the
        last-seen times of sites online, every half minute."""
        if self.state is None:
            return
        if now - self._sites_saved_at > 30:
            self._sites_saved_at = now
            self._changed_sites.update(r["name"] for r in self.reports.values())
        if not (self._changed_sites or self._changed_jobs or any(self._forgotten)):
            return
        sites = {name: self.offline[name] for name in self._changed_sites if name in self.offline}
        if len(sites) < len(self._changed_sites):  # online ones: their model as the catalog serves it
            sites.update(
                {
                    m["name"]: {**m, "state": "running"}
                    for m in self.site_models()
                    if m["name"] in self._changed_sites and m["name"] not in sites
                }
            )
        jobs = [self.jobs[j].to_dict() for j in self._changed_jobs if j in self.jobs]
        forgotten_sites, forgotten_jobs = self._forgotten
        try:
            self.state.save(sites, jobs, forgotten_sites, forgotten_jobs)
        except Exception:  # a full disk must not stop the fleet; say so and try again later
            logger.exception("could not save the hub's state in %s", self.state.path)
            return
        self._changed_sites, self._changed_jobs, self._forgotten = set(), set(), (set(), set())

    async def close(self) -> None:
        self._flush(time.time() + 60)
        if self.state is not None:
            self.state.close()

    def _forget_offline(self, now: float) -> None:
        """Offline sites are forgotten ``edge.forget-after`` after they left."""
        keep = config.seconds("forget-after")
        gone = [name for name, site in self.offline.items() if now - site["offline_since"] > keep]
        for name in gone:
            del self.offline[name]
            self._forgotten[0].add(name)
        if gone:
            self._catalog_changed()

    # --- the catalog ------------------------------------------------------

    def _catalog_changed(self) -> None:
        self.catalog_version += 1
        self.scheduler.log_event(CATALOG_TOPIC, catalog_changed(self.catalog_version))

    def site_models(self) -> list[dict]:
        """Each site as a JSON-able dict: its report plus what the scheduler
        knows now (state, heartbeat, load, live GPU samples). Plain dicts: this
        is served to every notebook and sidebar, often."""
        running: dict[str, int] = {}
        for ex in self.executions.values():
            running[ex.site] = running.get(ex.site, 0) + 1
        models = []
        for address, report in self.reports.items():
            ws = self.scheduler.workers.get(address)
            if ws is None:
                continue
            live = {g["index"]: g for g in (ws.metrics or {}).get("edge-gpus") or []}
            gpus = [
                {**gpu, **{k: live[gpu["index"]][k] for k in ("utilization", "memory_used")}}
                if gpu["index"] in live
                else gpu
                for gpu in report.get("gpus", ())
            ]
            models.append(
                {
                    **report,
                    "state": ws.status.name,
                    "last_seen": ws.last_seen,
                    "running": running.get(report["name"], 0),
                    "gpus": gpus,
                    # The site's round trip to the scheduler, as it measured it on its last heartbeat.
                    "rtt": (ws.metrics or {}).get("edge-rtt"),
                }
            )
        online = {m["name"] for m in models}
        models += [site for name, site in self.offline.items() if name not in online]
        return models

    def handle_catalog(self) -> dict:
        return {"sites": self.site_models(), "version": self.catalog_version}

    # --- jobs -------------------------------------------------------------

    def _forget_old_jobs(self) -> None:
        keep = int(config.get("jobs.keep"))
        for job_id in list(self.jobs)[: max(0, len(self.jobs) - keep)]:
            if all(ex.state in TERMINAL for ex in self.jobs[job_id].executions):
                del self.jobs[job_id]
                self.owners.pop(job_id, None)
                self._forgotten[1].add(job_id)

    def handle_jobs(self, limit: int | None = None) -> list[dict]:
        records = list(self.jobs.values())[::-1]
        return [r.to_dict() for r in records[:limit]]

    def _client_identity(self, client) -> str | None:
        stream = self.scheduler.client_comms.get(client) if client is not None else None
        return peer_identity(getattr(stream, "comm", None))

    def handle_cancel_request(self, comm, job: str, by: str = "someone") -> dict | None:
        """``edge_cancel``: only the job's owner may cancel it, the caller's
        certificate saying who that is over TLS, else the caller itself
        (``by``). Anyone else gets ``{"refused": why}``."""
        record = self.jobs.get(job)
        if record is None:
            return None
        caller = peer_identity(comm) or by
        if caller != record.owner:
            return {
                "job": record.to_dict(),
                "cancelled": [],
                "refused": f"job {job} belongs to {record.owner}; {caller} may not cancel it",
            }
        return self.handle_cancel(job, caller)

    def handle_cancel(self, job: str, by: str = "someone", reason: str | None = None) -> dict | None:
        """Cancel a job's unfinished executions on behalf of its client (the
        sidebar is not that client): the client's futures end ``cancelled``
        and the sites stop the work. ``None`` when there is no such job."""
        record = self.jobs.get(job)
        if record is None:
            return None
        unfinished = [ex for ex in record.executions if not ex.finished]
        self._changed_jobs.add(job)
        for ex in unfinished:
            ex.apply({"state": State.CANCELLED, "ended": time.time(), "error": reason or f"cancelled by {by}"})
            self.executions.pop(ex.id, None)
        owner = self.owners.get(job)
        keys = [ex.key for ex in unfinished if ex.key in self.scheduler.tasks]
        if owner in self.scheduler.clients and keys:
            self.scheduler.stimulus_cancel(
                keys,
                owner,
                force=True,
                reason=reason or f"cancelled by {by}",
                msg=f"edge job {job} was cancelled by {by}",
            )
        return {"job": record.to_dict(), "cancelled": [ex.id for ex in unfinished]}

    def handle_job(self, job: str) -> dict | None:
        record = self.jobs.get(job)
        return record.to_dict() if record else None


def peer_identity(comm) -> str | None:
    """The common name of a TLS peer's certificate (``None`` over plain TCP)."""
    info = getattr(comm, "extra_info", None) or {}
    cert = info.get("peercert") or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None
