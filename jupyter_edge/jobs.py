"""Job and execution records, and the one list of execution states.

The same records live in the scheduler's registry (as dicts) and in a client's
:class:`~jupyter_edge.fleet.Job`; updates from sites and clients are merged with
:meth:`Execution.apply`, where a finished state is final.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .protocol import execution_key

__all__ = [
    "TERMINAL",
    "Execution",
    "ExecutionError",
    "JobError",
    "JobInterrupted",
    "JobRecord",
    "SiteLost",
    "State",
]


class State(str, enum.Enum):
    QUEUED = "queued"  # waiting for a site that is offline now (``queue_timeout``); not sent yet
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed-out"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({State.DONE, State.FAILED, State.CANCELLED, State.TIMED_OUT, State.LOST})


class SiteLost(Exception):
    """The site running an execution left the fleet or stopped answering.

    The scheduler fails the execution's task with this, so that a site coming
    back under the same name never runs it again silently.
    """

    def __init__(self, site: str, reason: str):
        super().__init__(site, reason)
        self.site = site
        self.reason = reason

    def __str__(self) -> str:
        return f"site {self.site!r} was lost: {self.reason}"


@dataclass
class Execution:
    """One shard's (or one site's) part of a job."""

    id: str
    job: str
    site: str
    address: str
    dataset: str | None = None
    shard: str | None = None
    gpus: int = 0
    attempt: int = 1
    state: State = State.PENDING
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None  # the remote traceback, or why the fleet ended it
    error_type: str | None = None
    bytes_returned: int = 0
    outputs: list[dict] = field(default_factory=list)  # {"name": "stdout"|"stderr", "text": ...}

    @property
    def key(self) -> str:
        """The Dask key of this execution's task."""
        return execution_key(self.id)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def apply(self, update: dict[str, Any]) -> bool:
        """Merge an update; a finished execution never changes state again.
        Returns whether anything changed."""
        state = State(update.get("state", self.state))
        if self.finished and state != self.state:
            return False
        if state == State.PENDING and self.state == State.RUNNING:
            return False
        changed = False
        for name in ("started", "ended", "error", "error_type", "bytes_returned"):
            if update.get(name) is not None and getattr(self, name) != update[name]:
                setattr(self, name, update[name])
                changed = True
        if state != self.state:
            self.state = state
            changed = True
        return changed

    def to_dict(self, outputs: bool = True) -> dict:
        data = asdict(self)
        data["state"] = self.state.value
        if not outputs:
            data.pop("outputs")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Execution:
        names = {f.name for f in fields(cls)}
        ex = cls(**{k: v for k, v in data.items() if k in names})
        ex.state = State(ex.state)
        return ex


@dataclass
class JobRecord:
    """One ``Fleet.run``/``%%edge`` run: what ran, for whom, where."""

    id: str
    source: str
    request: dict
    owner: str
    created: float
    executions: list[Execution] = field(default_factory=list)

    @property
    def state(self) -> str:
        """``running`` until every execution is finished, then the worst outcome."""
        states = {ex.state for ex in self.executions}
        if not states <= TERMINAL:
            return "running"
        for worst in (State.LOST, State.FAILED, State.TIMED_OUT, State.CANCELLED):
            if worst in states:
                return worst.value
        return State.DONE.value

    def to_dict(self, outputs: bool = False) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "request": self.request,
            "owner": self.owner,
            "created": self.created,
            "state": self.state,
            "executions": [ex.to_dict(outputs=outputs) for ex in self.executions],
        }

    @classmethod
    def from_dict(cls, data: dict) -> JobRecord:
        return cls(
            id=data["id"],
            source=data["source"],
            request=data["request"],
            owner=data["owner"],
            created=data["created"],
            executions=[Execution.from_dict(e) for e in data.get("executions", [])],
        )


class ExecutionError(Exception):
    """What went wrong in one execution, with its remote traceback."""

    def __init__(self, execution: Execution):
        super().__init__(execution.site, execution.state.value, execution.error)
        self.execution = execution

    @property
    def site(self) -> str:
        return self.execution.site

    def __str__(self) -> str:
        ex = self.execution
        detail = (ex.error or "").strip().splitlines()
        return f"[{ex.site}] {ex.state.value}: {detail[-1] if detail else 'no detail'}"


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C (a kernel interrupt) stopped a job at every site; what had
    finished is kept on :attr:`result`."""

    def __init__(self, result):
        super().__init__(f"job {result.job} interrupted")
        self.result = result


class JobError(Exception):
    """Some executions of a job did not finish ``done``; the others' results
    are kept on :attr:`result`."""

    def __init__(self, job_id: str, errors: dict[str, ExecutionError], result: Any = None):
        super().__init__(job_id, errors)
        self.job_id = job_id
        self.errors = errors
        self.result = result

    def __str__(self) -> str:
        lines = [f"job {self.job_id}: {len(self.errors)} site(s) did not finish"]
        lines += [f"  {err}" for err in self.errors.values()]
        return "\n".join(lines)
