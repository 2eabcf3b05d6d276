"""Runs one notebook cell inside a container, with Python's standard library only.

The site mounts this file read-only into the container with a private folder
holding ``request.json`` (the cell, the dataset's mount point, the result limit)
and a Unix socket the site listens on. Everything goes back over that socket as
JSON lines: the user's output (their fds 1 and 2 are pipes read here, so it never
mixes with the protocol), displays, and one final result. No pickles cross the
container's boundary in either direction.

A value goes back as JSON when it is JSON (``{"json": ...}``; tuples become
lists), else as its text and HTML forms (``{"mime": {...}}``), which the
notebook shows as it would show the value.
"""

import glob
import json
import os
import socket
import sys
import threading
import time
import traceback

# Mounted beside this file by the site: jupyter_edge/site/cell.py, the one home
# of a cell's value semantics (standard library only, like this file).
from edge_cell import run_cell

IO_DIR = os.environ.get("EDGE_IO_DIR", "/edge/io")
FLUSH_INTERVAL = 0.05
CELL_FILENAME = "<edge-cell>"  # what tracebacks call the cell


class Channel:
    """JSON lines to the site, from any thread."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.lock = threading.Lock()

    def send(self, message):
        data = (json.dumps(message) + "\n").encode()
        with self.lock:
            self.sock.sendall(data)


class Dataset:
    """This site's shard, mounted read-only: what ``dataset`` is inside a container."""

    def __init__(self, info):
        self.name = info["name"]
        self.shard = info["shard"]
        self.path = info["path"]

    def files(self, pattern="**"):
        found = glob.glob(os.path.join(self.path, pattern), recursive=True)
        return sorted(os.path.relpath(p, self.path) for p in found if os.path.isfile(p))

    def open(self, path, mode="rb"):
        if any(c in mode for c in "wax+"):
            raise PermissionError(f"dataset {self.name!r} is read-only at the site")
        return open(os.path.join(self.path, path), mode)

    def __repr__(self):
        return f"<dataset {self.name}@{self.shard} at {self.path} (read-only)>"


class Site:
    def __init__(self, info):
        self.name = info["name"]
        self.labels = info.get("labels", {})
        self.gpus = info.get("gpus", [])

    def __repr__(self):
        return f"<site {self.name}>"


def forward(fd, name, channel):
    """Send what the user's code writes to ``fd`` as output, in small batches."""
    pending = []
    last = time.monotonic()
    while True:
        chunk = os.read(fd, 65536)
        if chunk:
            pending.append(chunk)
        if pending and (not chunk or time.monotonic() - last >= FLUSH_INTERVAL or len(pending) > 64):
            channel.send(
                {"op": "output", "output": {"name": name, "text": b"".join(pending).decode("utf-8", "replace")}}
            )
            pending, last = [], time.monotonic()
        if not chunk:
            return


def capture(channel):
    """Point fds 1 and 2 at pipes read by threads; returns a function that
    closes them and waits until everything written was sent."""
    threads = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        read, write = os.pipe()
        os.dup2(write, fd)
        os.close(write)
        thread = threading.Thread(target=forward, args=(read, name, channel), daemon=True)
        thread.start()
        threads.append(thread)

    def finish():
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        for thread in threads:
            thread.join(10)

    return finish


def mimebundle(obj):
    bundle = {"text/plain": repr(obj)}
    html = getattr(obj, "_repr_html_", None)
    if callable(html):
        try:
            text = html()
            if text:
                bundle["text/html"] = text
        except Exception:  # a broken _repr_html_ still leaves the text form
            pass
    return bundle


def is_json(value, depth=0):
    """Whether ``value`` survives JSON as itself (tuples come back as lists)."""
    if depth > 100:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, (list, tuple)):
        return all(is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v, depth + 1) for k, v in value.items())
    return False


def encode(value, limit):
    """The value as the site receives it, or a ValueError over the limit."""
    if is_json(value):
        text = json.dumps({"json": value})
    else:
        text = json.dumps({"mime": mimebundle(value)})
    if len(text) > limit:
        raise ValueError(
            f"the value is {len(text):,} bytes, over the site's result limit of {limit:,} bytes "
            "(edge.result-limit); return a summary"
        )
    return json.loads(text)


def main():
    with open(os.path.join(IO_DIR, "request.json")) as f:
        request = json.load(f)
    channel = Channel(os.path.join(IO_DIR, "site.sock"))

    def display(*objs):
        for obj in objs:
            channel.send({"op": "output", "output": {"name": "display", "data": mimebundle(obj)}})

    namespace = {
        "__name__": "__main__",
        "display": display,
        "site": Site(request["site"]),
        "dataset": Dataset(request["dataset"]) if request.get("dataset") else None,
    }
    finish = capture(channel)
    result = {"op": "result", "state": "done", "value": None, "error": None, "error_type": None}
    started = time.time()
    try:
        value = run_cell(request["cell"], namespace, filename=CELL_FILENAME)
        if value is not None:
            result["value"] = encode(value, request["result_limit"])
    except KeyboardInterrupt:
        result.update(state="cancelled", error="interrupted", error_type="KeyboardInterrupt")
    except BaseException as e:  # the user's error, reported whole, never a crash of the runner
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != CELL_FILENAME:
            tb = tb.tb_next  # the user's frames only, not this runner's
        frames = traceback.format_exception(type(e), e, tb)
        result.update(state="failed", error="".join(frames), error_type=type(e).__name__)
    finish()
    channel.send({**result, "started": started, "ended": time.time()})


if __name__ == "__main__":
    main()
