"""WebAssembly executions: a WASI module run at the site, sandboxed by wasmtime.

For sites that cannot run Docker and will not run arbitrary Python. A module
sees only what it is given: its arguments and variables, the site's shard of
its dataset preopened read-only at ``/data/NAME`` (``EDGE_DATASET_PATH``), and
no network (WASI preview 1 has none unless a host grants it; this one does not).
``memory`` caps its linear memory (the store's limits).

Each module is compiled once per site and kept by its SHA-256 (the compiled
code, serialized); each execution gets an engine of its own, into which the
compiled code is loaded in well under a millisecond. Its own engine is what lets
one execution be stopped without touching another: wasmtime interrupts a store
when its engine's epoch passes the store's deadline, so a timeout, a cancel or
a kernel interrupt advances that one engine's epoch, and the module traps at its
next loop back-edge or call, however tight its loop.

stdout and stderr stream back as the module writes them (batched as a runner
batches a cell's output); the exit code is the value, and a non-zero code fails
the execution, as a container command's does.
"""

from __future__ import annotations

import codecs
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..wasm_work import WASM_PAGE
from .capture import FLUSH_INTERVAL, FLUSH_SIZE
from .outcome import outcome

__all__ = ["DATA_ROOT", "WasmError", "WasmRunner", "wasmtime_missing"]

#: Where a dataset's shard appears inside the module's filesystem.
DATA_ROOT = "/data"
#: Compiled modules a site keeps, by SHA-256 (least recently used go first).
CACHED_MODULES = 32


class WasmError(Exception):
    """A module that cannot be run here; the message says why."""


def wasmtime_missing() -> str | None:
    """Why this site cannot run modules (wasmtime is not installed), or ``None``."""
    try:
        import wasmtime  # noqa: F401
    except ImportError:
        return "wasmtime is not installed: pip install 'jupyter-edge[wasm]'"
    return None


def _config():
    import wasmtime

    config = wasmtime.Config()
    config.epoch_interruption = True
    return config


class _Execution:
    """One running module: its engine (to interrupt it), why it must stop, its output."""

    def __init__(self, engine, on_output: Callable[[dict], None], deadline: float | None):
        self.engine = engine
        self.on_output = on_output
        self.deadline = deadline
        self.stopped: str | None = None
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in self._pending}
        self._size = 0

    def writer(self, name: str) -> Callable[[bytes], None]:
        def write(data) -> None:
            text = self._decoders[name].decode(bytes(data))
            with self._lock:
                self._pending[name].append(text)
                self._size += len(text)
                full = self._size >= FLUSH_SIZE
            if full:
                self.flush()

        return write

    def flush(self) -> None:
        with self._lock:
            batches = [(name, "".join(parts)) for name, parts in self._pending.items() if parts]
            self._pending = {name: [] for name in self._pending}
            self._size = 0
        for name, text in batches:
            if text:
                self.on_output({"name": name, "text": text})

    def stop(self, why: str) -> None:
        with self._lock:
            if self.finished.is_set():  # it ended (its engine may be closed already)
                return
            if self.stopped is None:
                self.stopped = why
            self.engine.increment_epoch()  # the store's deadline is one tick away: it traps now

    def end(self) -> None:
        """The module returned: no stop reaches its engine from now on."""
        with self._lock:
            self.finished.set()

    def watch(self) -> None:
        """Forward output while the module runs; stop it at its deadline."""
        while not self.finished.wait(FLUSH_INTERVAL):
            self.flush()
            if self.deadline is not None and time.time() >= self.deadline:
                self.stop("timed-out")


class WasmRunner:
    """The site's Wasm executor: compiled modules kept by hash, and the executions running."""

    def __init__(self, modules_dir: str | None = None):
        missing = wasmtime_missing()
        if missing:
            raise WasmError(missing)
        import wasmtime

        self.modules_dir = modules_dir  # where site:NAME modules are kept
        self._compiler = wasmtime.Engine(_config())
        self._compiled: OrderedDict[str, bytes] = OrderedDict()
        self._running: dict[str, _Execution] = {}
        self._lock = threading.Lock()

    def site_module(self, name: str) -> bytes:
        """The bytes of ``site:NAME``, a module kept in the site's modules folder."""
        if not self.modules_dir:
            raise WasmError(f"module site:{name}: this site keeps no modules (edge.wasm.modules is not set)")
        if not name or "/" in name or name.startswith("."):
            raise WasmError(f"module site:{name}: a module's name, without a folder")
        path = os.path.join(self.modules_dir, name if name.endswith(".wasm") else f"{name}.wasm")
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            known = sorted(n[:-5] for n in os.listdir(self.modules_dir) if n.endswith(".wasm"))
            raise WasmError(f"module site:{name}: {e.strerror}; kept here: {', '.join(known) or 'none'}") from None

    def compiled(self, module: bytes, sha256: str) -> bytes:
        """The module compiled for this machine, serialized: compiled once, then kept."""
        import wasmtime

        with self._lock:
            if sha256 in self._compiled:
                self._compiled.move_to_end(sha256)
                return self._compiled[sha256]
        try:
            code = wasmtime.Module(self._compiler, module).serialize()
        except wasmtime.WasmtimeError as e:
            raise WasmError(f"not a valid WebAssembly module: {_first_line(e)}") from None
        with self._lock:
            self._compiled[sha256] = code
            while len(self._compiled) > CACHED_MODULES:
                self._compiled.popitem(last=False)
        return code

    def stop(self, execution: str, why: str) -> None:
        with self._lock:
            running = self._running.get(execution)
        if running is not None:
            running.stop(why)

    def execute(
        self,
        execution: str,
        module: bytes,
        sha256: str,
        args: list[str],
        env: dict[str, str],
        dataset,
        memory: int | None,
        on_output: Callable[[dict], None],
        deadline: float | None,
    ) -> dict:
        """Run the module's ``_start``; an outcome as a runner's (state, value, error)."""
        import wasmtime

        started = time.time()
        try:
            code = self.compiled(module, sha256)
        except WasmError as e:
            return outcome("failed", str(e), "WasmError", started=started)
        engine = wasmtime.Engine(_config())
        running = _Execution(engine, on_output, deadline)
        with self._lock:
            self._running[execution] = running
        store = linker = None
        watcher = threading.Thread(target=running.watch, name=f"edge-wasm-{execution}", daemon=True)
        try:
            compiled = wasmtime.Module.deserialize(engine, code)
            store = wasmtime.Store(engine)
            store.set_epoch_deadline(1)
            if memory is not None:
                store.set_limits(memory_size=memory)
            store.set_wasi(self._wasi(running, args, env, dataset))
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            watcher.start()
            try:
                instance = linker.instantiate(store, compiled)
            except wasmtime.WasmtimeError as e:
                return outcome("failed", _instantiation_error(e, memory), "WasmError", started=started)
            start = instance.exports(store).get("_start")
            if start is None:
                why = "the module exports no _start: build it as a WASI command (a main function)"
                return outcome("failed", why, "WasmError", started=started)
            try:
                start(store)
                exit_code = 0
            except wasmtime.ExitTrap as e:
                exit_code = e.code
            except wasmtime.Trap as e:
                if running.stopped is not None:
                    why = running.stopped
                    return outcome(why, f"{why} at the site; the module was interrupted", started=started)
                return outcome("failed", _trap_message(e, instance, store, memory), "WasmTrap", started=started)
            except wasmtime.WasmtimeError as e:
                return outcome("failed", _first_line(e), "WasmError", started=started)
            value = pickle.dumps(exit_code)
            if exit_code != 0:
                return outcome(
                    "failed", f"the module exited with code {exit_code}", "ModuleFailed", value=value, started=started
                )
            return outcome("done", value=value, started=started)
        except WasmError as e:
            return outcome("failed", str(e), "WasmError", started=started)
        finally:
            running.end()
            if watcher.is_alive():
                watcher.join()
            running.flush()
            with self._lock:
                self._running.pop(execution, None)
            # Closed here, not at exit: a store with output callbacks freed at
            # interpreter exit panics inside wasmtime.
            for thing in (store, linker):
                if thing is not None:
                    thing.close()
            engine.close()

    @staticmethod
    def _wasi(running: _Execution, args: list[str], env: dict[str, str], dataset):
        import wasmtime

        wasi = wasmtime.WasiConfig()
        wasi.argv = ["module", *args]
        env = dict(env)
        if dataset is not None:
            inside = f"{DATA_ROOT}/{dataset.name}"
            if dataset.kind != "local":
                raise WasmError(
                    f"dataset {dataset.name!r} is in {dataset.kind} ({dataset.url}): a module reads only "
                    "a local shard, preopened read-only"
                )
            wasi.preopen_dir(os.path.abspath(dataset.url), inside, fs_mutable=False)
            env.update(EDGE_DATASET=dataset.name, EDGE_DATASET_SHARD=dataset.shard, EDGE_DATASET_PATH=inside)
        wasi.env = list(env.items())
        wasi.stdout_custom = running.writer("stdout")
        wasi.stderr_custom = running.writer("stderr")
        return wasi


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _trap_message(trap, instance, store, memory: int | None) -> str:
    """The trap's own message (``wasm trap: integer divide by zero``), with where it
    happened. Under a memory cap, also how much memory the module had: wasmtime
    does not say that a growth was refused (``memory.grow`` returns -1, and the
    module decides what to do), so a module that traps on it is told apart by this."""
    from dask.utils import format_bytes

    lines = [line for line in str(trap).strip().splitlines() if line.strip()]
    cause = next((line.strip() for line in reversed(lines) if line.strip().startswith("wasm trap")), lines[-1])
    where = [line.strip() for line in lines if line.strip()[:1].isdigit()][:3]
    message = cause + (f" (at {'; '.join(where)})" if where else "")
    if memory is not None:
        exported = instance.exports(store).get("memory")
        if exported is not None and hasattr(exported, "size"):
            had = format_bytes(exported.size(store) * WASM_PAGE)
            message += f"; its memory was {had}, capped at {format_bytes(memory)} by --memory (growing past it fails)"
    return message


def _instantiation_error(error, memory: int | None) -> str:
    from dask.utils import format_bytes

    text = _first_line(error)
    if memory is not None and "memory" in text and "limit" in text:
        return f"the module needs more memory than the cap of {format_bytes(memory)} (--memory): {text}"
    return f"the module cannot be instantiated here: {text}"
