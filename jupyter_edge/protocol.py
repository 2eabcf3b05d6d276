"""The wire protocol: every message between sites, the scheduler plugin and clients.

Messages are plain dicts (they travel through Dask's event topics, its worker
stream and its scheduler handlers, which carry msgpack-able values). Each is
built here, by one constructor per kind, and carries its kind explicitly, so no
receiver has to guess a message's meaning from which keys it happens to hold.
New messages belong in this module.

Nothing here ever opens a connection to a site: sites sit behind NAT and
firewalls. Everything a site sends goes on the connections it opened (its
worker stream and its event topics), and everything it is sent comes back on
its worker stream, through the scheduler (``Scheduler.worker_send``). A client
never gathers a value from a site (Dask would dial the site for that): values
come to it in outcomes, or in chunks with flow control.

Who sends what::

    site -> scheduler       SITE_TOPIC          site_report
    site -> scheduler       EXECUTION_TOPIC     execution_news (running, and each end)
    client -> scheduler     EXECUTION_TOPIC     execution_news (what only the client knows:
                                                a timeout, a cancel)
    site -> scheduler       OUTPUT_OP stream    output_batch, outcome, value_chunk
    scheduler -> a job's    JOB_TOPIC           output_batch, outcome, value_chunk, state_news
      own client
    client -> scheduler     VALUE_ACK_OP stream value_ack (a chunk arrived: the site may send
      -> the site                               another)
    scheduler -> clients    CATALOG_TOPIC       catalog_changed
    client -> scheduler     handlers            CATALOG_HANDLER, JOBS_HANDLER, JOB_HANDLER,
                                                CANCEL_HANDLER, RESET_HANDLER, QUEUE_HANDLER
                                                (request/response)
    scheduler -> each site  DROP_SESSIONS_OP    drop_sessions (forget a notebook's names)
    site -> scheduler       SESSIONS_DROPPED_OP sessions_dropped (how many it held)
    client -> scheduler     task annotation     ANNOTATION: job_annotation (a job registers
                                                with its tasks)
"""

from __future__ import annotations

from typing import Any

# --- names on the wire ------------------------------------------------------------

#: Event topic: sites report themselves (labels, datasets, GPUs, versions).
SITE_TOPIC = "edge-site"
#: Event topic: news of executions (state changes) for the scheduler's registry.
EXECUTION_TOPIC = "edge-execution"
#: Event topic: the catalog changed (a client drops its cached copy).
CATALOG_TOPIC = "edge-catalog"
#: Event topic: live news of one job, sent to the client that submitted it and no one else.
JOB_TOPIC = "edge-output"
#: Worker stream op: a site's output batches and small outcomes, relayed to the job's client
#: (nothing is kept on the way).
OUTPUT_OP = "edge-output"

#: Scheduler handlers (request/response) that clients call.
CATALOG_HANDLER = "edge_catalog"
JOBS_HANDLER = "edge_jobs"
JOB_HANDLER = "edge_job"
CANCEL_HANDLER = "edge_cancel"
RESET_HANDLER = "edge_reset"
QUEUE_HANDLER = "edge_queue"

#: Client stream op, relayed to the site's stream: a chunk of a value arrived.
VALUE_ACK_OP = "edge-value-ack"
#: Scheduler -> site stream op: forget these notebooks' names; the site answers
#: with ``SESSIONS_DROPPED_OP`` on its own stream.
DROP_SESSIONS_OP = "edge-drop-sessions"
SESSIONS_DROPPED_OP = "edge-sessions-dropped"

#: The Dask annotation that carries an execution's record with its task.
ANNOTATION = "edge"
#: Every edge task's key starts with this; the rest is the execution id.
KEY_PREFIX = "edge-"
#: Labels under this prefix are set by the site itself (capabilities), never by ``--label``.
RESERVED_PREFIX = "edge."
#: The reserved labels a site sets itself. A site's own label may hold several
#: values, comma-separated (``edge.executor=python,docker``); a selector's
#: requirement holds when one of them matches.
EXECUTOR_LABEL = "edge.executor"  # how the site runs work: python, and docker where it runs containers
ARCH_LABEL = "edge.arch"  # the machine, as uname says it: x86_64, aarch64
OS_LABEL = "edge.os"  # linux
GPU_VENDOR_LABEL = "edge.gpu.vendor"  # nvidia, amd, intel
GPU_MODEL_LABEL = "edge.gpu.model"  # the models, as label values: nvidia-jetson-agx-orin-developer-kit
GPU_COUNT_LABEL = "edge.gpu.count"
GPU_MEMORY_LABEL = "edge.gpu.memory"  # bytes of the largest GPU (the host's, for unified memory)


def gpu_resource(vendor: str) -> str:
    """The Dask resource that counts a site's GPUs of one vendor (beside ``GPU``, all of them)."""
    return f"GPU-{vendor}"


#: A result this small (value and output) also travels with the task's end, to
#: the job's client, which then needs no gather round trip for it.
INLINE_RESULT = 64 * 1024


class Kind:
    """The kinds of a job's live news (``msg["kind"]``)."""

    OUTPUT = "output"  # a batch of an execution's stdout/stderr/displays
    OUTCOME = "outcome"  # an execution's whole result, sent with its task's end when small
    STATE = "state"  # an execution's new state, as the registry recorded it
    VALUE = "value"  # one chunk of a value too large to travel with its outcome


def execution_key(execution: str) -> str:
    """The Dask key of an execution's task."""
    return f"{KEY_PREFIX}{execution}"


def execution_of(key: Any) -> str | None:
    """The execution id of an edge task's key; ``None`` for any other task."""
    if isinstance(key, str) and key.startswith(KEY_PREFIX):
        return key[len(KEY_PREFIX) :]
    return None


# --- sites to the scheduler ---------------------------------------------------------


def site_report(site: dict) -> dict:
    """A site's whole description (``Site.to_dict()``), sent at start and on change."""
    return {"op": "report", "site": site}


def is_site_report(msg: Any) -> bool:
    return isinstance(msg, dict) and msg.get("op") == "report" and isinstance(msg.get("site"), dict)


def execution_news(execution: str, job: str, state: str, **fields: Any) -> dict:
    """An execution's new state for the registry, with what changed (``started``,
    ``ended``, ``error``, ``error_type``, ``bytes_returned``)."""
    return {"execution": execution, "job": job, "state": state, **fields}


# --- a job's live news, to its own client -------------------------------------------


def output_batch(job: str, execution: str, site: str, outputs: list[dict]) -> dict:
    """Output an execution produced since its last batch (sent by the site on its stream)."""
    return {"op": OUTPUT_OP, "kind": Kind.OUTPUT, "job": job, "execution": execution, "site": site, "outputs": outputs}


def outcome(job: str, execution: str, site: str, result: dict) -> dict:
    """An execution's result, sent with its task's end: state, timings, error and
    ``bytes_returned``, and its ``value`` bytes when they are small
    (``INLINE_RESULT``); else ``value`` is ``None`` and the value went before, in
    ``value_chunk``s. Its output went before too, in ``output_batch``es."""
    return {"op": OUTPUT_OP, "kind": Kind.OUTCOME, "job": job, "execution": execution, "site": site, "outcome": result}


def value_chunk(job: str, execution: str, site: str, seq: int, data: bytes | memoryview, last: bool) -> dict:
    """Chunk ``seq`` of an execution's value (the client acknowledges each with ``value_ack``).
    The bytes travel as a frame of their own (Dask's ``to_serialize``): the scheduler,
    which does not deserialize, passes the frame on to the client without copying it
    into a message."""
    from distributed.protocol import to_serialize  # here: a runner imports this module, without Dask

    return {
        "op": OUTPUT_OP,
        "kind": Kind.VALUE,
        "job": job,
        "execution": execution,
        "site": site,
        "seq": seq,
        "data": to_serialize(data),
        "last": last,
    }


def value_ack(job: str, execution: str, seq: int) -> dict:
    """The client has chunk ``seq`` of an execution's value."""
    return {"op": VALUE_ACK_OP, "job": job, "execution": execution, "seq": seq}


def drop_sessions(request: str, sessions: list[str]) -> dict:
    return {"op": DROP_SESSIONS_OP, "request": request, "sessions": list(sessions)}


def sessions_dropped(request: str, site: str, count: int) -> dict:
    return {"op": SESSIONS_DROPPED_OP, "request": request, "site": site, "count": count}


def state_news(job: str, execution: str, site: str, state: str, started: float | None, ended: float | None) -> dict:
    """An execution's state as the scheduler's registry now has it."""
    return {
        "kind": Kind.STATE,
        "job": job,
        "execution": execution,
        "site": site,
        "state": state,
        "started": started,
        "ended": ended,
    }


def job_event(msg: dict) -> dict:
    """A job's news as its client receives it on ``JOB_TOPIC`` (the stream op removed)."""
    return {k: v for k, v in msg.items() if k not in ("op", "worker")}


# --- the scheduler to every client -----------------------------------------------------


def catalog_changed(version: int) -> dict:
    return {"version": version}


# --- a job registering with its tasks ----------------------------------------------------


def job_annotation(job: dict, execution: dict) -> dict:
    """What an execution's task carries under ``ANNOTATION``: the job's header
    (id, source, request, owner, created) and the execution's record."""
    return {"job": job, "execution": execution}
