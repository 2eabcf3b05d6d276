"""The Fleet API: connect to a fleet, see its sites and datasets, run work at them.

Everything else (the magics, the server extension, the CLI's ``status``) is a
thin layer over this module.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import shlex
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

import cloudpickle
from dask.utils import parse_timedelta
from distributed import Client

from . import config
from .catalog import Catalog, DatasetInfo, Site
from .job import Job
from .jobs import JobInterrupted, JobRecord
from .placement import NO_TARGET, Placement, PlacementError, Request, place
from .protocol import (
    CANCEL_HANDLER,
    CATALOG_HANDLER,
    CATALOG_TOPIC,
    JOB_HANDLER,
    JOB_TOPIC,
    JOBS_HANDLER,
    RESET_HANDLER,
    Kind,
)
from .result import JobResult
from .scheduler import EdgeSchedulerPlugin
from .wasm_work import wasm_work

__all__ = ["Fleet", "FleetUnreachable", "Job"]


class FleetUnreachable(OSError):
    """The fleet's scheduler does not answer now (a hub restarting, a link down);
    nothing was sent. The Fleet keeps its address and tries again on the next call."""


logger = logging.getLogger(__name__)


class Fleet:
    """A connection to a fleet of edge sites.

    >>> fleet = Fleet.connect("tcp://127.0.0.1:8786")            # doctest: +SKIP
    >>> res = fleet.run(lambda dataset: len(dataset.files()), data="sensors")  # doctest: +SKIP
    >>> dict(res)                                                 # doctest: +SKIP
    {'berlin': 12, 'paris': 9}
    """

    def __init__(self, client: Client, *, cluster=None):
        self.cluster = cluster  # an embedded fleet this object owns (Fleet.demo)
        self.address = client.scheduler.address
        self.identity = _identity(client)  # who this Fleet acts for: jobs' owner, cancels' caller
        self._cached: Catalog | None = None  # for placement; dropped when the fleet announces a change
        self._cached_at = 0.0
        self._lock = threading.Lock()
        self._reconnecting = threading.Lock()
        self._running: Counter[str] = Counter()  # this Fleet's executions in flight, by site
        self._live: dict[str, Job] = {}  # running jobs, for their live output
        self._catalog_version = 0  # changes announced so far (queued executions look again)
        self._closed = False
        self._attach(client)

    def _attach(self, client: Client) -> None:
        """Use ``client``: the fleet's plugin is there, and its news comes here."""
        self.client = client
        self._scheduler_id = _scheduler_id(client)
        self._ensure_scheduler_plugin()
        client.subscribe_topic(CATALOG_TOPIC, self._on_catalog_change)
        client.subscribe_topic(JOB_TOPIC, self._on_job_news)
        with self._lock:
            self._cached = None

    def _ready(self) -> Client:
        """The client, connected again if the scheduler went away and came back (a
        hub restart): Dask's own client gives up after its timeout, and a new
        scheduler knows nothing of the old one's subscriptions. While the
        scheduler does not answer, :class:`FleetUnreachable` at once."""
        if self.cluster is not None or self._closed:
            return self.client
        if self.client.status == "running":
            if _scheduler_id(self.client) != self._scheduler_id:
                # Dask's client found a new scheduler by itself; tell that one what we listen to.
                with self._reconnecting:
                    self._attach(self.client)
            return self.client
        with self._reconnecting:
            if self.client.status != "running":
                old = self.client
                try:
                    # A scheduler that is down refuses at once; Dask's connect would retry
                    # until its timeout. One that answers gets the whole timeout (a busy hub).
                    _answers_now(self.address, config.seconds("connect-timeout"))
                    new = Client(
                        self.address,
                        timeout=config.seconds("connect-timeout"),
                        security=old.security,
                        set_as_default=False,
                    )
                except (OSError, TimeoutError) as e:
                    raise FleetUnreachable(
                        f"the fleet's scheduler at {self.address} is unreachable ({e}); nothing was sent. "
                        "The connection is kept: the next call tries again"
                    ) from None
                with contextlib.suppress(Exception):
                    old.close(timeout=2)
                logger.info("reconnected to the fleet's scheduler at %s", self.address)
                self._attach(new)
        return self.client

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        *,
        scheduler_file: str | None = None,
        timeout: float | str | None = None,
        security=None,
        tls_dir: str | None = None,
    ) -> Fleet:
        """Connect to the fleet at ``address``; without one, ``$JUPYTER_EDGE_SCHEDULER``,
        then ``edge.scheduler-address``.

        TLS: ``tls_dir`` (a folder made by ``jupyter-edge certs create``), a
        ``distributed.Security``, or ``edge.tls.*``; with it the address is
        ``tls://`` and the certificate's common name is who this client is.
        """
        address = config.scheduler_address(address) if scheduler_file is None else address
        if address is None and scheduler_file is None:
            raise ValueError(
                "no fleet to connect to: pass an address (tcp://host:8786) or scheduler_file, "
                f"set ${config.SCHEDULER_ENV} or edge.scheduler-address, or use Fleet.demo()"
            )
        if security is None:
            security = config.security(tls_dir)
        if address is not None:
            check_scheme(address, security)
        timeout = timeout if timeout is not None else config.get("connect-timeout")
        try:
            client = Client(
                address, scheduler_file=scheduler_file, timeout=timeout, security=security, set_as_default=False
            )
        except (OSError, TimeoutError) as e:
            if security is not None:
                raise OSError(
                    f"could not connect to {address or scheduler_file} over TLS: {e} (is this "
                    "certificate signed by the fleet's CA, and is the scheduler started with TLS?)"
                ) from None
            raise
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
        if self._call(CATALOG_HANDLER) is None:
            self.client.register_plugin(EdgeSchedulerPlugin())

    def _call(self, op: str, **kwargs):
        client = self._ready()
        try:
            return client.sync(getattr(client.scheduler, op), **kwargs)
        except (OSError, TimeoutError) as e:  # it went away just now
            raise FleetUnreachable(f"the fleet's scheduler at {self.address} is unreachable ({e})") from None

    def close(self) -> None:
        self._closed = True
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

    def catalog(self, fresh: bool = True) -> Catalog:
        """A snapshot of the fleet from the scheduler; ``fresh=False`` accepts
        the one kept for placement, when there is one."""
        if not fresh:
            with self._lock:
                if self._cached is not None:
                    return self._cached
        catalog = Catalog.from_dict(self._call(CATALOG_HANDLER))
        with self._lock:
            self._cached, self._cached_at = catalog, time.monotonic()
        return catalog

    def _on_job_news(self, event) -> None:
        """A running job's news (see :mod:`jupyter_edge.protocol`), by its kind."""
        _, msg = event
        job = self._live.get(msg["job"])
        if job is None:
            return
        kind = msg["kind"]
        if kind == Kind.STATE:
            job._on_state(msg)
        elif kind == Kind.OUTCOME:
            job._outcomes[msg["execution"]] = msg["outcome"]
        elif kind == Kind.OUTPUT:
            job._on_output(msg["execution"], msg["site"], msg["outputs"])
        elif kind == Kind.VALUE:
            job._on_value_chunk(msg)
        else:
            logger.warning("job %s: news of an unknown kind %r (a newer scheduler?)", msg["job"], kind)

    def _on_catalog_change(self, event) -> None:
        with self._lock:
            self._cached = None
            self._catalog_version += 1
        for job in list(self._live.values()):
            if job._queued:  # a site may be back for it
                job._queue_woken.set()

    def _in_flight(self, site: str, delta: int) -> None:
        with self._lock:
            self._running[site] += delta

    def _place(
        self, request: Request, exclude: Iterable[str] = (), refresh: bool = False, queue: bool = False
    ) -> Placement:
        """Place ``request`` on the cached catalog, kept current by the fleet's
        change announcements; a request it cannot place is tried once more on
        a fresh catalog before it fails.

        Replicas are chosen by load: this Fleet's own executions in flight,
        plus the fleet's as of the last catalog fetch while that is recent.
        """
        with self._lock:
            catalog, age = self._cached, time.monotonic() - self._cached_at
        fresh = catalog is None or refresh or age > config.seconds("catalog-max-age")
        if fresh:
            catalog = self.catalog()
        while True:
            with self._lock:
                load = {s.name: s.running + self._running[s.name] for s in catalog}
            try:
                return place(request, catalog, exclude=exclude, load=load, queue=queue)
            except PlacementError:
                if fresh:
                    raise
                catalog, fresh = self.catalog(), True

    def sites(self) -> list[Site]:
        """Every site: name, address, state, labels, datasets, GPUs, versions."""
        return sorted(self.catalog(), key=lambda s: s.name)

    def datasets(self) -> dict[str, DatasetInfo]:
        """Dataset name -> its shards, holding sites, bytes, files and kind."""
        return self.catalog().datasets()

    def wait_for_sites(self, count: int, timeout: float = 30) -> list[Site]:
        """Block until at least ``count`` sites are online (a fleet just started, or
        coming back); returns those online. Offline sites are not counted."""
        deadline = time.monotonic() + timeout
        while True:
            sites = [s for s in self.sites() if s.state != "offline"]
            if len(sites) >= count:
                return sites
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(sites)} of {count} sites reported within {timeout}s: "
                    f"{', '.join(s.name for s in sites) or 'none'}"
                )
            time.sleep(0.05)

    def jobs(self, limit: int | None = None) -> list[JobRecord]:
        """The fleet's jobs, newest first, as the scheduler's registry has them."""
        return [JobRecord.from_dict(j) for j in self._call(JOBS_HANDLER, limit=limit)]

    def job(self, job_id: str, wait: float = 2.0) -> JobRecord:
        """One job from the fleet's registry (``KeyError`` if it has none).

        A job registers with its tasks, which may trail this request by a few
        milliseconds: an unknown id is asked again for up to ``wait`` seconds.
        """
        found = self._call(JOB_HANDLER, job=job_id)
        deadline = time.monotonic() + wait
        while found is None and time.monotonic() < deadline:
            time.sleep(0.02)
            found = self._call(JOB_HANDLER, job=job_id)
        if found is None:
            raise KeyError(f"no job {job_id!r} in the fleet's registry")
        return JobRecord.from_dict(found)

    def cancel_job(self, job_id: str) -> list[str]:
        """Cancel a job of yours (one this process did not start, too); returns
        the executions it stopped. ``KeyError`` if there is no such job,
        ``PermissionError`` if it is someone else's (over TLS, the certificates
        say who is who)."""
        found = self._call(CANCEL_HANDLER, job=job_id, by=self.identity)
        if found is None:
            raise KeyError(f"no job {job_id!r} in the fleet's registry")
        if found.get("refused"):
            raise PermissionError(found["refused"])
        return list(found["cancelled"])

    # --- running work --------------------------------------------------------

    def submit(
        self,
        fn: Callable,
        *args,
        data: str | None = None,
        where: str | None = None,
        gpus: int = 0,
        sites=None,
        all: bool = False,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        kwargs: dict | None = None,
        source: str | None = None,
    ) -> Job:
        """Start ``fn(*args, dataset=..., site=..., **kwargs)`` at every placed site;
        return at once with a :class:`Job`.

        ``fn`` receives ``dataset`` (this site's shard, or ``None``) and ``site``
        if its signature names them. A request no site can satisfy raises
        :class:`PlacementError` before anything runs.
        """
        request = Request.build(data=data, where=where, gpus=gpus, sites=sites, all=all)
        return self._start(
            _function_work(fn, args, kwargs),
            request,
            timeout,
            retries,
            source or _describe(fn),
            supervise_in_thread=True,
            queue_timeout=queue_timeout,
        )

    def run(
        self,
        fn: Callable,
        *args,
        data: str | None = None,
        where: str | None = None,
        gpus: int = 0,
        sites=None,
        all: bool = False,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        kwargs: dict | None = None,
        source: str | None = None,
    ) -> JobResult:
        """:meth:`submit`, then wait: a :class:`JobResult` (site -> value).

        Interrupting it (Ctrl-C) cancels the job at every site, then re-raises.
        """
        request = Request.build(data=data, where=where, gpus=gpus, sites=sites, all=all)
        job = self._start(
            _function_work(fn, args, kwargs),
            request,
            timeout,
            retries,
            source or _describe(fn),
            supervise_in_thread=False,
            queue_timeout=queue_timeout,
        )
        return _supervise_here(job)

    # --- running cells ---------------------------------------------------------

    def submit_cell(
        self,
        source: str,
        *,
        names: dict | None = None,
        session: str | None = None,
        fresh: bool = False,
        data: str | None = None,
        where: str | None = None,
        gpus: int = 0,
        sites=None,
        all: bool = False,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        on_output=None,
        image: str | None = None,
        **container,
    ) -> Job:
        """Start a notebook cell's ``source`` at every placed site; its value is
        that of its last expression, as in IPython. ``on_output(site, outputs)``
        receives the output while it runs.

        ``names`` are sent along (see :func:`jupyter_edge.cells.names_to_send`);
        ``session`` keeps the names a cell defines at each site for the next
        cell of the same session (a notebook), unless ``fresh``. ``dataset``
        and ``site`` are always this site's handles.

        With ``image``, the cell runs in a fresh container of that image at
        each site (sites started with ``--docker``); see :meth:`submit_command`
        for ``network``, ``cpus``, ``memory`` and ``pull``. Only the source
        travels: no notebook names, no session.
        """
        request = Request.build(
            data=data, where=where, gpus=gpus, sites=sites, all=all, executor="docker" if image is not None else None
        )
        return self._start(
            self._cell_or_container_work(source, names, session, fresh, image, container),
            request,
            timeout,
            retries,
            _first_line(source),
            supervise_in_thread=True,
            queue_timeout=queue_timeout,
            on_output=on_output,
        )

    def run_cell(
        self,
        source: str,
        *,
        names: dict | None = None,
        session: str | None = None,
        fresh: bool = False,
        data: str | None = None,
        where: str | None = None,
        gpus: int = 0,
        sites=None,
        all: bool = False,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        on_output=None,
        on_start=None,
        image: str | None = None,
        **container,
    ) -> JobResult:
        """:meth:`submit_cell`, then wait: a :class:`JobResult` (site -> value).
        ``on_start(job)`` is called once the job is launched (a progress view).
        Interrupting it (Ctrl-C) cancels the job at every site, then re-raises."""
        request = Request.build(
            data=data, where=where, gpus=gpus, sites=sites, all=all, executor="docker" if image is not None else None
        )
        job = self._start(
            self._cell_or_container_work(source, names, session, fresh, image, container),
            request,
            timeout,
            retries,
            _first_line(source),
            supervise_in_thread=False,
            queue_timeout=queue_timeout,
            on_output=on_output,
        )
        return _supervise_here(job, on_start)

    # --- containers ----------------------------------------------------------------

    def submit_command(
        self,
        command: list[str],
        *,
        image: str,
        data: str | None = None,
        where: str | None = None,
        gpus: int = 0,
        sites=None,
        all: bool = False,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        on_output=None,
        network: bool | str | None = None,
        cpus: float | None = None,
        memory: int | str | None = None,
        pull: bool = False,
    ) -> Job:
        """Run ``command`` (an argument list; no Python needed) in a fresh container
        of ``image`` at every placed site, on sites started with ``--docker``.

        The site's local shard of ``data`` is mounted read-only at
        ``/data/NAME`` (``$EDGE_DATASET_PATH``). ``network``: none unless given
        (``True``: the engine's default network, or a mode such as ``"host"``);
        ``cpus`` and ``memory`` (``"512MiB"`` or bytes) limit the container;
        ``pull`` lets the site's engine pull a missing image. stdout and stderr
        stream back as output; the exit code is the value, and a non-zero one
        fails the execution.
        """
        work, request = self._command_work(
            command,
            image,
            data=data,
            where=where,
            gpus=gpus,
            sites=sites,
            all=all,
            network=network,
            cpus=cpus,
            memory=memory,
            pull=pull,
        )
        return self._start(
            work,
            request,
            timeout,
            retries,
            shlex.join(command)[:120],
            supervise_in_thread=True,
            on_output=on_output,
            queue_timeout=queue_timeout,
        )

    def run_command(
        self,
        command: list[str],
        *,
        image: str,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        on_output=None,
        on_start=None,
        **options,
    ) -> JobResult:
        """:meth:`submit_command`, then wait: a :class:`JobResult` of exit codes.
        ``on_start(job)`` is called once the job is launched (a progress view).
        Interrupting it (Ctrl-C) cancels the job at every site, then re-raises."""
        work, request = self._command_work(command, image, **options)
        # Followed here only: a second supervisor (submit_command's thread) would count
        # the job's executions out of flight twice and collect its results twice.
        job = self._start(
            work,
            request,
            timeout,
            retries,
            shlex.join(command)[:120],
            supervise_in_thread=False,
            on_output=on_output,
            queue_timeout=queue_timeout,
        )
        return _supervise_here(job, on_start)

    # --- WebAssembly -----------------------------------------------------------------

    def submit_wasm(
        self,
        module,
        args=(),
        *,
        data: str | None = None,
        where: str | None = None,
        sites=None,
        all: bool = False,
        env: dict[str, str] | None = None,
        memory: int | str | None = None,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        on_output=None,
    ) -> Job:
        """Run a WASI module (a ``.wasm`` file here, its bytes, or ``"site:NAME"``, a
        module each site keeps) with ``args`` at every placed site started with ``--wasm``.

        The site's shard of ``data`` is preopened read-only at ``/data/NAME``
        (``$EDGE_DATASET_PATH``); nothing else of the site's filesystem is there,
        and no network. ``env`` passes variables; ``memory`` (``"64MiB"`` or bytes)
        caps its linear memory. stdout and stderr stream back as output; the exit
        code is the value, and a non-zero one (or a trap) fails the execution.
        ``timeout``, ``cancel()`` and a kernel interrupt stop a module mid-loop.
        """
        work, request, source = self._wasm_work(
            module, args, data=data, where=where, sites=sites, all=all, env=env, memory=memory
        )
        return self._start(
            work,
            request,
            timeout,
            retries,
            source,
            supervise_in_thread=True,
            on_output=on_output,
            queue_timeout=queue_timeout,
        )

    def run_wasm(
        self,
        module,
        args=(),
        *,
        timeout: float | None = None,
        retries: int = 0,
        queue_timeout: float | str | None = None,
        on_output=None,
        on_start=None,
        **options,
    ) -> JobResult:
        """:meth:`submit_wasm` (the same ``data``, ``where``, ``sites``, ``all``, ``env``
        and ``memory``), then wait: a :class:`JobResult` of exit codes.
        Interrupting it (Ctrl-C) stops the module at every site, then re-raises."""
        work, request, source = self._wasm_work(module, args, **options)
        job = self._start(
            work,
            request,
            timeout,
            retries,
            source,
            supervise_in_thread=False,
            on_output=on_output,
            queue_timeout=queue_timeout,
        )
        return _supervise_here(job, on_start)

    @staticmethod
    def _wasm_work(
        module, args, *, data=None, where=None, sites=None, all=False, env=None, memory=None
    ) -> tuple[dict, Request, str]:
        request = Request.build(data=data, where=where, sites=sites, all=all, executor="wasm")
        work, source = wasm_work(module, args, env=env, memory=memory)
        return work, request, f"wasm {source}"

    @staticmethod
    def _command_work(
        command: list[str],
        image: str,
        *,
        data: str | None = None,
        where: str | None = None,
        gpus: int = 0,
        sites=None,
        all: bool = False,
        network: bool | str | None = None,
        cpus: float | None = None,
        memory: int | str | None = None,
        pull: bool = False,
    ) -> tuple[dict, Request]:
        request = Request.build(data=data, where=where, gpus=gpus, sites=sites, all=all, executor="docker")
        return _container_work(image, command=command, network=network, cpus=cpus, memory=memory, pull=pull), request

    def _cell_or_container_work(self, source: str, names, session, fresh, image, container: dict) -> dict:
        if image is None:
            if container:
                raise ValueError(f"{', '.join(sorted(container))} apply only to containers: add image=...")
            return self._cell_work(source, names, session, fresh)
        if names:
            raise ValueError(
                "a container cell gets no notebook names (only its source travels): pass what it needs in the source"
            )
        self._cell_work(source)  # the same checks: not empty, compiles
        return _container_work(image, cell=source, **container)

    def _cell_work(
        self, source: str, names: dict | None = None, session: str | None = None, fresh: bool = False
    ) -> dict:
        from .cells import pack_names

        if not isinstance(source, str) or not source.strip():
            raise ValueError("the cell is empty: nothing to run")
        compile(source, "<edge-cell>", "exec")  # a syntax error fails here, not at every site
        return {"cell": {"source": source, "names": pack_names(names or {}), "session": session, "fresh": bool(fresh)}}

    def reset_sessions(self, session: str, timeout: float = 10.0) -> dict[str, int | None]:
        """Forget ``session``'s names at every site: site -> sessions it dropped,
        ``None`` for a site that did not answer within ``timeout`` (asked and
        answered over each site's own connection: nothing dials a site)."""
        found = self._call(RESET_HANDLER, sessions=[session], timeout=timeout)
        return {**found["dropped"], **dict.fromkeys(found["unanswered"])}

    def _start(
        self,
        work: dict,
        request: Request,
        timeout,
        retries,
        source: str,
        supervise_in_thread: bool,
        on_output=None,
        queue_timeout=None,
    ) -> Job:
        if not request.has_target:  # before any catalog is fetched
            raise PlacementError(NO_TARGET)
        self._ready()
        timeout = _seconds(timeout)
        if queue_timeout is None:
            queue_timeout = config.get("queue-timeout")
        queue_timeout = _seconds(queue_timeout, "queue_timeout")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        placement = self._place(request, queue=queue_timeout is not None)
        job = Job(
            self,
            request,
            work,
            timeout=timeout,
            retries=retries,
            source=source,
            owner=self.identity,
            on_output=on_output,
            queue_timeout=queue_timeout,
        )
        job.start(placement, supervise_in_thread=supervise_in_thread)
        return job


def _answers_now(address: str, timeout: float) -> None:
    """Open (and close) a TCP connection to the scheduler's port: ``OSError`` if it refuses."""
    from distributed.comm import get_address_host_port

    host, port = get_address_host_port(address)
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _scheduler_id(client: Client) -> str | None:
    """The scheduler the client is connected to, as its handshake said. (Dask's
    ``scheduler_info()`` would ask the scheduler about every worker each time.)"""
    return (getattr(client, "_scheduler_identity", None) or {}).get("id")


def _seconds(timeout, name: str = "timeout") -> float | None:
    """A timeout as seconds: a number, or a Dask duration such as ``"90s"``."""
    if timeout is None:
        return None
    try:
        seconds = parse_timedelta(timeout, default="seconds")
    except (ValueError, TypeError, KeyError):
        seconds = None
    if isinstance(timeout, bool) or seconds is None or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds (or e.g. '90s'), not {timeout!r}")
    return seconds


def _supervise_here(job: Job, on_start=None) -> JobResult:
    """Call ``on_start(job)``, then follow ``job`` in this thread (no hand-off on the
    way back); Ctrl-C stops it at every site and raises :class:`JobInterrupted` with
    what finished, also when it comes during ``on_start`` (the job already runs)."""
    supervising = False
    try:
        if on_start is not None:
            on_start(job)
        supervising = True
        job.supervise()
    except KeyboardInterrupt:
        if not supervising:
            job.supervise(stop=True)
        raise JobInterrupted(job.result()) from None
    return job.result()


def _identity(client: Client) -> str:
    """The certificate's common name over TLS, else ``edge.owner`` /
    ``$JUPYTERHUB_USER`` / the operating system's user."""
    cert = getattr(client.security, "tls_client_cert", None) if client.security else None
    if cert:
        from .certs import common_name

        with open(cert, "rb") as f:
            name = common_name(f.read())
        if name:
            return name
    return config.owner_name()


def check_scheme(address: str, security) -> None:
    """TLS and the address must agree: a clear message instead of a handshake that hangs."""
    tls = security is not None and getattr(security, "require_encryption", False)
    if tls and not address.startswith("tls://"):
        raise ValueError(
            f"TLS is on (a certificate was given), so the scheduler's address must be tls://..., "
            f"not {address!r}: a plain tcp:// peer is refused"
        )
    if not tls and address.startswith("tls://"):
        raise ValueError(
            f"{address} speaks TLS: give a certificate (tls_dir=, --tls-dir, or edge.tls.*) "
            "made by the fleet's `jupyter-edge certs create`"
        )


def _container_work(
    image: str,
    cell: str | None = None,
    command: list[str] | None = None,
    network: bool | str | None = None,
    cpus: float | None = None,
    memory: int | str | None = None,
    pull: bool = False,
) -> dict:
    """A container execution's work, checked here so that bad options fail before anything is sent."""
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image.strip()):
        raise ValueError(f"image must name an image at the sites (e.g. 'edge-python:3.11'), not {image!r}")
    if command is not None and (
        isinstance(command, str) or not command or not all(isinstance(a, str) for a in command)
    ):
        raise ValueError(f"command must be a non-empty list of strings, not {command!r}")
    if cpus is not None and (
        isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not math.isfinite(cpus) or cpus <= 0
    ):
        raise ValueError(f"cpus must be a number of CPUs above 0, not {cpus!r}")
    if memory is not None:
        memory = config.size_at_least(memory, 6 * 2**20, "memory", "512MiB", "6 MiB (the engine's minimum)")
    if network is not None and not isinstance(network, (bool, str)):
        raise ValueError(f"network must be True or a network mode such as 'host', not {network!r}")
    return {
        "container": {
            "image": image.strip(),
            "cell": cell,
            "command": list(command) if command else None,
            "network": network or None,
            "cpus": cpus,
            "memory": memory,
            "pull": bool(pull),
        }
    }


def _first_line(source: str) -> str:
    lines = [line for line in source.strip().splitlines() if line.strip()]
    return lines[0][:120] if lines else ""


def _function_work(fn: Callable, args: tuple, kwargs: dict | None) -> dict:
    """A function's work for the sites: pickled once, however many sites run it."""
    return {"payload": cloudpickle.dumps((fn, args, kwargs or {})), "call": _call_convention(fn)}


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
