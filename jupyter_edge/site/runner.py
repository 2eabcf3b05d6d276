"""The site's pool of runner processes (started on first use), driven by Dask tasks.

A Dask task cannot be stopped by raising into its worker thread (a blocked
``time.sleep`` or C code never sees it) and tasks share the worker's stdout. So
each execution runs in a runner process of its own: the task thread hands it the
work and waits. Stopping is interrupt, then kill and replace.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import Connection

from .. import config
from .outcome import outcome
from .value_spool import receive_value

logger = logging.getLogger(__name__)

#: How often a waiting task thread looks at stop requests and deadlines (seconds).
_TICK = 0.1

#: Sessions whose runner stopped, remembered to tell them at their next cell.
_DROPPED_KEPT = 10_000


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


class RunnerProcess:
    """One runner child and the socket to it."""

    def __init__(self, env: dict[str, str], preload: list[str]):
        parent, child = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_edge.site.runner_main", str(child.fileno()), *preload],
            pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the site is not the cell's
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.ready = False
        self.tainted = False  # must not take more work (GPU env set, killed, ...)
        self.drops: list[str] = []  # sessions to forget once it is idle
        self.last_used = time.monotonic()

    def wait_ready(self, timeout: float) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise TimeoutError(f"runner process {self.proc.pid} did not start in {timeout}s")
        msg = pickle.loads(self.conn.recv_bytes())
        if msg.get("op") != "ready":
            raise RuntimeError(f"runner process {self.proc.pid} sent {msg!r} before it was ready")
        self.ready = True

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.conn.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            logger.warning("runner process %d did not exit", self.proc.pid)


class Stop:
    """A request to stop one execution: why, and when it was asked."""

    def __init__(self, reason: str):
        self.reason = reason  # "cancelled" or "timed-out"
        self.at = time.monotonic()


class RunnerPool:
    """Up to ``size`` runners, started on first use and stopped once unused for
    ``idle`` seconds (``edge.runner.idle``): an idle site keeps no runner. A
    runner killed or tainted by its execution is replaced at once, in the
    background. A session whose runner stopped is told so at its next cell."""

    def __init__(self, size: int, env: dict[str, str] | None = None, idle: float | None = None):
        self.size = size
        self.idle = (config.seconds("runner.idle") or 0) if idle is None else idle
        # Figures are drawn off-screen and sent as PNG when shown, like the inline backend.
        self.env = {**os.environ, **(env or {}), "MPLBACKEND": "module://jupyter_edge.site.figures"}
        self.preload = list(config.get("runner.preload") or [])
        self._free: list[RunnerProcess] = []  # ready and idle
        self._freed = threading.Condition()
        self._sessions: dict[str, RunnerProcess] = {}  # a session's names live in one runner
        self._stops: dict[str, Stop] = {}
        self._active: set[str] = set()
        self._all: set[RunnerProcess] = set()
        self._starting = 0  # runners started and not yet ready
        self._waiting = 0  # executions waiting for a runner
        self._dropped: OrderedDict[str, str] = OrderedDict()  # session -> why its names went
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start every runner now rather than on first use (benchmarks)."""
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        if self._closed:
            return
        runner = RunnerProcess(self.env, self.preload)
        with self._freed:
            self._all.add(runner)
            self._starting += 1
        threading.Thread(target=self._await_ready, args=(runner,), daemon=True, name="edge-runner-start").start()

    def _await_ready(self, runner: RunnerProcess) -> None:
        try:
            runner.wait_ready(60)
        except Exception:
            with self._freed:
                self._starting -= 1
            if self._closed:  # the site is shutting down; nothing to replace
                runner.close()
                return
            logger.exception("a runner failed to start; trying another")
            runner.close()
            self._all.discard(runner)
            time.sleep(1)
            self._spawn()
            return
        with self._freed:
            self._starting -= 1
        if self._closed:
            runner.close()
        else:
            self._put(runner)

    def _put(self, runner: RunnerProcess) -> None:
        with self._freed:
            self._send_drops(runner)
            runner.last_used = time.monotonic()
            self._free.append(runner)
            self._freed.notify_all()

    @property
    def idle_check_interval(self) -> float:
        """How often to call :meth:`stop_idle` (seconds): a quarter of ``idle``, 1 s to 60 s."""
        return min(max(self.idle / 4, 1.0), 60.0)

    def stop_idle(self) -> None:
        """Stop the runners unused for ``idle`` seconds, and with them the sessions
        they hold (each told at its next cell). Never blocks: they end in the background."""
        if not self.idle:
            return
        now = time.monotonic()
        with self._freed:
            idle = [r for r in self._free if now - r.last_used > self.idle]
            for runner in idle:
                self._free.remove(runner)
                self._all.discard(runner)
                for session in [s for s, r in self._sessions.items() if r is runner]:
                    del self._sessions[session]
                    self._dropped[session] = (
                        f"its runner stopped after {_duration(self.idle)} unused (edge.runner.idle)"
                    )
            while len(self._dropped) > _DROPPED_KEPT:
                self._dropped.popitem(last=False)
        if idle:
            threading.Thread(target=lambda: [r.close() for r in idle], daemon=True, name="edge-runner-stop").start()

    def stop(self, execution: str, reason: str) -> None:
        """Ask for ``execution`` to stop; its task thread acts on it at once."""
        with self._lock:
            if execution in self._active:
                self._stops.setdefault(execution, Stop(reason))

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Kill every runner, busy or not; a busy task thread then returns."""
        self._closed = True
        for runner in list(self._all):
            runner.close()
        self._all.clear()

    def execute(
        self,
        execution: str,
        request: dict,
        on_output: Callable[[dict], None],
        deadline: float | None = None,
        session: str | None = None,
    ) -> dict:
        """Run ``request`` in a ready runner; return its outcome message.

        Blocks the calling (task) thread. ``deadline`` is a ``time.time()``
        after which the execution is stopped as ``timed-out``. A ``session``
        runs where its names are (and waits for that runner if it is busy).
        """
        with self._lock:
            self._active.add(execution)
        try:
            runner = self._acquire(execution, deadline, session)
            if runner is None:  # stopped while it waited for a runner: never started
                stop = self._stops[execution]
                return outcome(stop.reason, f"{stop.reason} at the site before it started")
            why = self.dropped(session)
            if why is not None:
                on_output(
                    {
                        "name": "stderr",
                        "text": f"this notebook's names here were dropped ({why}): "
                        "run the cells that define them again\n",
                    }
                )
            try:
                return self._drive(runner, execution, request, on_output, deadline)
            finally:
                self._release(runner)
        finally:
            self._forget(execution)

    def _acquire(self, execution: str, deadline: float | None, session: str | None) -> RunnerProcess | None:
        with self._freed:
            self._waiting += 1
        try:
            while True:
                if deadline is not None and time.time() >= deadline:
                    self.stop(execution, "timed-out")
                if execution in self._stops:
                    return None
                with self._freed:
                    runner = self._choose(session)
                    if runner is not None:
                        self._free.remove(runner)
                        if session is not None:
                            self._sessions[session] = runner
                        return runner
                    if self._needs_another(session):
                        self._spawn()  # the first use of this runner slot since the site went idle
                    self._freed.wait(_TICK)
        finally:
            with self._freed:
                self._waiting -= 1

    def _needs_another(self, session: str | None) -> bool:
        """Whether a waiting execution should start a runner (under ``_freed``):
        not if its session's runner is only busy, nor past ``size``, nor when
        enough are starting for everyone waiting."""
        holder = self._sessions.get(session) if session is not None else None
        if holder is not None and holder.alive and not holder.tainted:
            return False
        return len(self._all) < self.size and self._starting < self._waiting

    def dropped(self, session: str | None) -> str | None:
        """Why ``session``'s names here are gone, once (its runner stopped), else ``None``."""
        if session is None:
            return None
        with self._freed:
            return self._dropped.pop(session, None)

    def _choose(self, session: str | None) -> RunnerProcess | None:
        """The runner holding ``session`` once it is free, else any free one
        (preferring runners that hold no session)."""
        holder = self._sessions.get(session) if session is not None else None
        if holder is not None and holder.alive and not holder.tainted:
            return holder if holder in self._free else None
        if not self._free:
            return None
        held = set(self._sessions.values())
        return min(self._free, key=lambda r: r in held)

    def drop_sessions(self, sessions: list[str]) -> int:
        """Forget ``sessions``' names; returns how many this site held."""
        dropped = 0
        with self._freed:
            for session in sessions:
                self._dropped.pop(session, None)  # forgotten on purpose: nothing to tell
                runner = self._sessions.pop(session, None)
                if runner is not None and runner.alive:
                    dropped += 1
                    runner.drops.append(session)
                    if runner in self._free:  # a busy one is told when it is released
                        self._send_drops(runner)
        return dropped

    @staticmethod
    def _send_drops(runner: RunnerProcess) -> None:
        drops, runner.drops = runner.drops, []
        if drops:
            try:
                runner.conn.send_bytes(pickle.dumps({"op": "drop", "sessions": drops}))
            except OSError:
                runner.tainted = True

    def _release(self, runner: RunnerProcess) -> None:
        if runner.tainted or not runner.alive or self._closed:
            runner.close()
            self._all.discard(runner)
            with self._freed:
                for session in [s for s, r in self._sessions.items() if r is runner]:
                    del self._sessions[session]
            self._spawn()
        else:
            self._put(runner)

    def _forget(self, execution: str) -> None:
        with self._lock:
            self._stops.pop(execution, None)
            self._active.discard(execution)

    def _drive(
        self,
        runner: RunnerProcess,
        execution: str,
        request: dict,
        on_output: Callable[[dict], None],
        deadline: float | None,
    ) -> dict:
        grace = config.seconds("runner.interrupt-grace")
        runner.conn.send_bytes(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        if (request.get("site") or {}).get("gpus"):
            runner.tainted = True  # GPU runtimes read their visible devices once per process
        interrupted_at = None
        while True:
            stop = self._stops.get(execution)
            if stop is None and deadline is not None and time.time() >= deadline:
                self.stop(execution, "timed-out")
                stop = self._stops[execution]
            if stop is not None:
                if interrupted_at is None:
                    runner.signal(signal.SIGINT)
                    interrupted_at = time.monotonic()
                elif time.monotonic() - interrupted_at > grace:
                    runner.tainted = True
                    runner.signal(signal.SIGKILL)
            try:
                if not runner.conn.poll(_TICK):
                    continue
                msg = pickle.loads(runner.conn.recv_bytes())
            except (EOFError, OSError):
                return self._died(runner, stop)
            if msg["op"] == "output":
                on_output(msg["output"])
            elif msg["op"] == "result":
                try:
                    follows = msg.pop("value_follows", None)
                    msg["value"] = receive_value(runner.conn, follows, msg.pop("value_size")) if follows else None
                except (EOFError, OSError):
                    return self._died(runner, stop)
                if stop is not None and msg["state"] == "cancelled":
                    msg["state"] = stop.reason
                    msg["error"] = f"{stop.reason} at the site; stopped by interrupt"
                return msg

    def _died(self, runner: RunnerProcess, stop: Stop | None) -> dict:
        runner.tainted = True
        try:
            code = runner.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if stop is not None:
            return outcome(
                stop.reason,
                f"{stop.reason} at the site; the cell did not stop on interrupt "
                f"within {config.seconds('runner.interrupt-grace'):g}s and was killed "
                "(the names its notebook had there are gone)",
                "Killed",
            )
        return outcome("failed", f"the runner process died (exit code {code}) while running the cell", "RunnerDied")
