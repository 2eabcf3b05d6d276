"""The hub's memory across restarts: the sites it has known and its job records.

SQLite from the standard library, one file in the scheduler's state folder
(``--state-dir`` / ``edge.state-dir``). Values and outputs are never stored:
only what the catalog and the job registry show. The scheduler plugin marks
what changed and flushes it about once a second, so a killed scheduler loses
at most that second.
"""

from __future__ import annotations

import json
import os
import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (name TEXT PRIMARY KEY, model TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created REAL NOT NULL, record TEXT NOT NULL);
"""


def default_dir(scheduler_file: str | None, port: int) -> str:
    """Beside the scheduler's file when it has one, else in the user's state folder."""
    if scheduler_file:
        return os.path.join(os.path.dirname(os.path.abspath(scheduler_file)), "jupyter-edge-state")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "jupyter-edge", f"hub-{port}")


class HubState:
    """``hub.sqlite3`` in ``folder``: sites by name, job records by id."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "hub.sqlite3")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)

    def sites(self) -> dict[str, dict]:
        return {name: json.loads(model) for name, model in self._db.execute("SELECT name, model FROM sites")}

    def jobs(self) -> list[dict]:
        """Job records, oldest first."""
        return [json.loads(record) for (record,) in self._db.execute("SELECT record FROM jobs ORDER BY created")]

    def save(self, sites: dict[str, dict], jobs: list[dict], forgotten_sites=(), forgotten_jobs=()) -> None:
        """Write what changed, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO sites (name, model) VALUES (?, ?)",
                [(name, json.dumps(model)) for name, model in sites.items()],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO jobs (id, created, record) VALUES (?, ?, ?)",
                [(job["id"], job["created"], json.dumps(job)) for job in jobs],
            )
            self._db.executemany("DELETE FROM sites WHERE name = ?", [(n,) for n in forgotten_sites])
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in forgotten_jobs])

    def close(self) -> None:
        self._db.close()
