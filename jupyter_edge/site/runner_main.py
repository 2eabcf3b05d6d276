"""A runner process: executes one piece of user work at a time for its site.

Started by :class:`~jupyter_edge.site.runner.RunnerPool` as
``python -m jupyter_edge.site.runner_main FD``; it speaks to the site over the
socket FD (length-prefixed pickles of plain dicts; the user's function travels
as cloudpickle bytes made by the notebook). Its own fds 1 and 2 belong to the
execution in progress. SIGINT interrupts the user's code and nothing else.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

import cloudpickle

from . import cell as cell_module
from . import ipython_shell, value_spool
from .capture import FDCapture
from .cell import run_cell
from .display import display, displays_to, flush_figures
from .handle import SiteHandle
from .value_spool import ValueSpool, pickle_value


class Runner:
    def __init__(self, conn: Connection):
        self.conn = conn
        self._send_lock = threading.Lock()
        self._interruptible = False
        self.capture = FDCapture()
        self.sessions: dict[str, dict] = {}  # a notebook's names at this site, by session
        self._display = None  # what a cell's `display` is: IPython's where installed (set at the first cell)
        self.last_used: dict[str, float] = {}
        signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum, frame):
        # Only the user's code is interruptible; between executions an
        # interrupt that arrived late is ignored.
        if self._interruptible:
            raise KeyboardInterrupt

    def send(self, msg: dict) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.conn.send_bytes(data)

    def send_result(self, outcome: dict) -> None:
        """The result, then its value right after it, as its spool says (site/value_spool.py):
        a value is not copied into (and out of) a pickled dict on its way to the site."""
        spool: ValueSpool | None = outcome.pop("value")
        if spool is not None:
            outcome.update(value_follows=spool.follows, value_size=spool.size)
        try:
            with self._send_lock:
                self.conn.send_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
                if spool is not None:
                    spool.send(self.conn)
        finally:
            if spool is not None:
                spool.close()

    def serve(self) -> None:
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            try:
                msg = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                return
            if msg["op"] == "run":
                self.send_result(self.execute(msg))
            elif msg["op"] == "drop":
                for session in msg["sessions"]:
                    self.sessions.pop(session, None)
                    self.last_used.pop(session, None)
            elif msg["op"] == "exit":
                return

    def execute(self, msg: dict) -> dict:
        os.environ.update(msg.get("env") or {})
        outcome: dict = {"op": "result", "value": None, "error": None, "error_type": None}
        started = time.time()

        def forward(name: str, text: str) -> None:
            self.send({"op": "output", "output": {"name": name, "text": text}})

        try:
            with self.capture.running(forward):
                value = self._run_cell(msg) if msg.get("cell") else self._call(msg)
            spool = pickle_value(value, msg["result_limit"])
            outcome.update(state="done", value=spool)
        except KeyboardInterrupt:
            outcome.update(state="cancelled", error="interrupted at the site", error_type="KeyboardInterrupt")
        except BaseException as e:  # the user's error, reported; the runner lives on
            outcome.update(state="failed", error=_format_remote(e), error_type=type(e).__name__)
        outcome.update(started=started, ended=time.time())
        return outcome

    def _call(self, msg: dict):
        self._interruptible = True
        try:
            fn, args, kwargs = cloudpickle.loads(msg["payload"])
            kwargs = dict(kwargs)
            if msg["call"].get("dataset"):
                kwargs["dataset"] = _dataset(msg)
            if msg["call"].get("site"):
                kwargs["site"] = SiteHandle(**msg["site"])
            return fn(*args, **kwargs)
        finally:
            self._interruptible = False

    def _run_cell(self, msg: dict):
        cell = msg["cell"]
        self._reap(cell.get("idle_limit"))
        session = cell.get("session")
        if cell.get("fresh") or session is None:
            namespace = {"__name__": "__main__"}
        else:
            namespace = self.sessions.setdefault(session, {"__name__": "__main__"})
            self.last_used[session] = time.time()
        self._interruptible = True
        try:
            if cell.get("names"):
                namespace.update(cloudpickle.loads(cell["names"]))
            # Reserved: always this site's handles, whatever the cell assigned before.
            namespace["dataset"] = _dataset(msg)
            namespace["site"] = SiteHandle(**msg["site"])
            namespace["display"] = self._cell_display()
            with displays_to(self._emit_display(msg)):
                value = run_cell(cell["source"], namespace, label=f"edge-{msg['site']['name']}")
                flush_figures()
            return value
        finally:
            self._interruptible = False

    def _cell_display(self):
        """IPython's ``display`` where IPython is installed (its first use costs
        this runner an import, so it waits for the first cell), else the site's own."""
        if self._display is None:
            if ipython_shell.install():
                from IPython.display import display as ipython_display

                self._display = ipython_display
            else:
                self._display = display
        return self._display

    def _emit_display(self, msg: dict):
        limit = msg.get("image_limit") or 0

        def emit(data: dict) -> None:
            for mime in [m for m in data if m.startswith("image/")]:
                if limit and len(data[mime]) > limit:
                    size = len(data.pop(mime)) * 3 // 4
                    data["text/plain"] = (
                        f"[{mime} of {size:,} bytes not sent: over this site's "
                        f"edge.output-image-limit] {data.get('text/plain', '')}"
                    )
            self.capture.flush_now()  # what was printed before comes before it
            self.send({"op": "output", "output": {"name": "display", "data": data}})

        return emit

    def _reap(self, idle_limit: float | None) -> None:
        """Forget sessions idle for longer than ``idle_limit`` seconds."""
        if not idle_limit:
            return
        now = time.time()
        for session, used in list(self.last_used.items()):
            if now - used > idle_limit:
                self.sessions.pop(session, None)
                self.last_used.pop(session, None)


def _dataset(msg: dict):
    """The execution's shard, or ``None``. fsspec is imported by the first one: a
    runner that never reads a dataset starts without it."""
    spec = msg.get("dataset")
    if not spec:
        return None
    from .dataset import Dataset

    return Dataset(**spec, storage_options=msg.get("storage_options"))


_OWN_FILES = {__file__, cell_module.__file__, value_spool.__file__}


def _format_remote(error: BaseException) -> str:
    """The traceback from the user's code down, without the runner's own frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _OWN_FILES:
        tb = tb.tb_next
    if tb is None:  # the runner's own error about the work (a value it cannot send): no traceback
        return f"{type(error).__name__}: {error}\n"
    return "".join(traceback.format_exception(type(error), error, tb))


def _exit_with_parent(parent: int) -> None:
    """A runner never outlives its site, even while the user's code is busy."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    fd = int(argv[0])
    for module in argv[1:]:
        importlib.import_module(module)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="edge-parent-watch").start()
    Runner(Connection(fd)).serve()


if __name__ == "__main__":
    main()
