"""What a finished job gives back: a mapping site -> value, and everything else."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .jobs import Execution, ExecutionError, JobError, State

__all__ = ["JobResult"]


class JobResult(Mapping):
    """Site name -> value, for every execution that finished ``done``.

    ``executions`` holds each site's final execution (a lost one that was
    retried elsewhere is in ``attempts`` only); ``errors`` the ones that did not
    finish ``done``; ``outputs`` what each printed.
    """

    def __init__(self, job: str, attempts: list[Execution], values: dict[str, Any], superseded: set[str] = frozenset()):
        self.job = job
        self.attempts = list(attempts)
        final = [ex for ex in self.attempts if ex.id not in superseded]
        self.executions: dict[str, Execution] = {ex.site: ex for ex in final}
        self._values = {
            site: values[ex.id] for site, ex in self.executions.items() if ex.state == State.DONE and ex.id in values
        }

    def __getitem__(self, site: str) -> Any:
        return self._values[site]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def errors(self) -> dict[str, ExecutionError]:
        return {site: ExecutionError(ex) for site, ex in self.executions.items() if ex.state != State.DONE}

    @property
    def ok(self) -> bool:
        return all(ex.state == State.DONE for ex in self.executions.values())

    @property
    def outputs(self) -> dict[str, list[dict]]:
        return {site: ex.outputs for site, ex in self.executions.items()}

    @property
    def bytes_returned(self) -> int:
        return sum(ex.bytes_returned for ex in self.attempts)

    def raise_for_errors(self) -> JobResult:
        """Raise :class:`JobError` naming every site that did not finish ``done``."""
        errors = self.errors
        if errors:
            raise JobError(self.job, errors, result=self)
        return self

    def to_frame(self):
        """One pandas DataFrame of every site's value, with a ``site`` column:
        DataFrames and Series are concatenated, other values form a ``value``
        column. A ``site`` column a value already has is replaced: it says where
        each row was computed."""
        import pandas as pd

        frames = []
        for site, value in self._values.items():
            if isinstance(value, pd.DataFrame):
                frame = value.copy()
            elif isinstance(value, pd.Series):
                frame = value.to_frame(name=value.name if value.name is not None else "value")
            else:
                frame = pd.DataFrame({"value": [value]})
            frame = frame.drop(columns="site", errors="ignore")
            frame.insert(0, "site", site)
            frames.append(frame)
        if not frames:
            return pd.DataFrame({"site": []})
        return pd.concat(frames)

    def __repr__(self) -> str:
        states = ", ".join(f"{s}: {ex.state.value}" for s, ex in sorted(self.executions.items()))
        return f"<JobResult {self.job} {states}>"
