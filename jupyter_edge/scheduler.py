"""The scheduler plugin: the fleet's catalog and job registry.

Sites report themselves on the ``edge-site`` topic and their executions on
``edge-execution``; clients place jobs through the ``edge_submit`` handler, so
placement sees the fleet-wide load, and read the catalog and jobs through
``edge_catalog``/``edge_jobs``/``edge_job``. A site that leaves, or stays silent
longer than ``edge.liveness``, has its unfinished executions failed as ``lost``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict

from distributed import SchedulerPlugin
from distributed.protocol.pickle import dumps as pickle_dumps
from tornado.ioloop import PeriodicCallback

from . import config
from .catalog import Catalog, Site
from .jobs import TERMINAL, Execution, JobRecord, SiteLost, State
from .placement import PlacementError, Request, place
from .site.plugin import EXECUTION_TOPIC, KEY_PREFIX, SITE_TOPIC

logger = logging.getLogger(__name__)


class EdgeSchedulerPlugin(SchedulerPlugin):
    name = "jupyter-edge"
    idempotent = True

    def __init__(self):
        self.reports: dict[str, dict] = {}  # worker address -> the site's last report
        self.jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self.executions: dict[str, Execution] = {}  # unfinished, by id
        self.scheduler = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update({
            "edge_catalog": self.handle_catalog,
            "edge_submit": self.handle_submit,
            "edge_jobs": self.handle_jobs,
            "edge_job": self.handle_job,
        })
        # Sites that reported before this plugin was installed are not forgotten.
        for _, msg in scheduler.get_events(SITE_TOPIC):
            self.log_event(SITE_TOPIC, msg)
        liveness = config.seconds("liveness")
        callback = PeriodicCallback(self.check_liveness, min(1.0, liveness / 4) * 1000)
        scheduler.periodic_callbacks["edge-liveness"] = callback
        callback.start()

    # --- what sites and clients tell us ---------------------------------

    def log_event(self, topic: str, msg) -> None:
        if topic == SITE_TOPIC and msg.get("op") == "report":
            address = msg.get("worker") or msg["site"]["address"]
            if address in self.scheduler.workers:
                self.reports[address] = msg["site"]
        elif topic == EXECUTION_TOPIC:
            execution = self.executions.get(msg.get("execution"))
            if execution is not None:
                execution.apply(msg)
                if execution.finished:
                    self.executions.pop(execution.id, None)

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        report = self.reports.pop(worker, None)
        name = report["name"] if report else worker
        self.lose_site(worker, name, kwargs.get("stimulus_id", "edge-remove-worker"))

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        # A client that cancels, times out or disconnects releases its tasks.
        if finish == "forgotten" and isinstance(key, str) and key.startswith(KEY_PREFIX):
            execution = self.executions.pop(key[len(KEY_PREFIX):], None)
            if execution is not None:
                execution.apply({"state": State.CANCELLED, "ended": time.time(),
                                 "error": "released by the notebook before it finished"})

    def lose_site(self, address: str, name: str, stimulus_id: str) -> None:
        """Fail the unfinished executions of a site that is gone, so that
        their tasks can never run again, there or anywhere."""
        lost = [ex for ex in self.executions.values() if ex.address == address]
        recommendations = {}
        for ex in lost:
            reason = "it left the fleet or stopped answering while the execution was unfinished"
            ex.apply({"state": State.LOST, "ended": time.time(), "error": str(SiteLost(name, reason))})
            self.executions.pop(ex.id, None)
            ts = self.scheduler.tasks.get(ex.key)
            if ts is None or ts.state in ("memory", "erred", "forgotten"):
                continue
            try:
                recommendations.update(self.scheduler.transition(
                    ex.key, "erred", exception=pickle_dumps(SiteLost(name, reason)), cause=ex.key,
                    stimulus_id=stimulus_id,
                ))
            except Exception:  # a task in a state Dask cannot err from: release it instead
                logger.exception("could not fail task %s of lost site %s", ex.key, name)
        if recommendations:
            self.scheduler.transitions(recommendations, stimulus_id=stimulus_id)

    async def check_liveness(self) -> None:
        """Remove sites silent for longer than ``edge.liveness`` (frozen, cut off)."""
        limit = config.seconds("liveness")
        now = time.time()
        for address in list(self.reports):
            ws = self.scheduler.workers.get(address)
            if ws is not None and now - ws.last_seen > limit:
                logger.warning("site %s silent for %.1fs (edge.liveness %gs): removing it",
                               self.reports[address]["name"], now - ws.last_seen, limit)
                await self.scheduler.remove_worker(address, stimulus_id=f"edge-liveness-{now}", close=True)

    # --- the catalog ------------------------------------------------------

    def catalog(self) -> Catalog:
        running: dict[str, int] = {}
        for ex in self.executions.values():
            running[ex.site] = running.get(ex.site, 0) + 1
        sites = {}
        for address, report in self.reports.items():
            ws = self.scheduler.workers.get(address)
            if ws is None:
                continue
            site = Site.from_dict(report)
            site.state = ws.status.name
            site.last_seen = ws.last_seen
            site.running = running.get(site.name, 0)
            for live in (ws.metrics or {}).get("edge-gpus") or []:
                for gpu in site.gpus:
                    if gpu.index == live["index"]:
                        gpu.utilization, gpu.memory_used = live["utilization"], live["memory_used"]
            sites[site.name] = site
        return Catalog(sites)

    def handle_catalog(self) -> dict:
        return self.catalog().to_dict()

    # --- jobs -------------------------------------------------------------

    def handle_submit(self, request: dict, source: str, owner: str, exclude=(), job: str | None = None,
                      attempt: int = 1) -> dict:
        """Place a request and register its executions (pending) under a job.

        With ``job``, add a retry (``attempt``) to that job instead of a new one.
        """
        try:
            placement = place(Request.from_dict(request), self.catalog(), exclude=exclude)
        except PlacementError as e:
            return {"error": str(e)}
        now = time.time()
        record = self.jobs.get(job) if job else None
        if record is None:
            record = JobRecord(id=self._new_job_id(), source=source, request=request, owner=owner, created=now)
            self.jobs[record.id] = record
            self._forget_old_jobs()
        new = []
        for target in placement.targets:
            ex = Execution(id=f"{record.id}.{len(record.executions)}", job=record.id, site=target.site,
                           address=target.address, dataset=target.dataset, shard=target.shard,
                           gpus=target.gpus, attempt=attempt, submitted=now)
            record.executions.append(ex)
            self.executions[ex.id] = ex
            new.append(ex)
        return {"job": record.id, "executions": [ex.to_dict(outputs=False) for ex in new]}

    def _new_job_id(self) -> str:
        while True:
            job = secrets.token_hex(3)
            if job not in self.jobs:
                return job

    def _forget_old_jobs(self) -> None:
        keep = int(config.get("jobs.keep"))
        for job_id in list(self.jobs)[: max(0, len(self.jobs) - keep)]:
            record = self.jobs[job_id]
            if all(ex.state in TERMINAL for ex in record.executions):
                del self.jobs[job_id]

    def handle_jobs(self, limit: int | None = None) -> list[dict]:
        records = list(self.jobs.values())[::-1]
        return [r.to_dict() for r in records[:limit]]

    def handle_job(self, job: str) -> dict | None:
        record = self.jobs.get(job)
        return record.to_dict() if record else None
