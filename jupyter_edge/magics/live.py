"""Live output: each site's output, labelled, in the cell that started the job.

Output arrives on the client's event loop while the cell runs. In a Jupyter
kernel it is sent with the message header of the cell that asked; elsewhere it
is written to this process's stdout/stderr. A ``--noblock`` cell has finished by
the time its output comes, and front ends drop output sent to a finished
request, so there the output goes into a display the cell created, updated by
its display id (which front ends route to it wherever it is).

Sites write concurrently and their batches end wherever a flush fell, often in
the middle of a line. Each line is shown whole, with its site's label: a site's
unfinished line is held until its newline (or the job's end), so another site's
text never lands on the same line.
"""

from __future__ import annotations

import contextvars
import sys
import threading

from ..result import JobResult

METADATA_KEY = "jupyter_edge"  # display metadata: which site an output came from


class LiveOutput:
    def __init__(self, shell, detached: bool = False):
        kernel = getattr(shell, "kernel", None)
        self._kernel = kernel if kernel is not None and hasattr(kernel, "iopub_socket") else None
        # The request of the cell running now: its outputs are routed by it.
        self._parent = self._kernel.get_parent() if self._kernel is not None else None
        self._shown: dict[tuple[str, str], int] = {}  # (site, stream) -> characters received
        self._unfinished: dict[tuple[str, str], str] = {}  # (site, stream) -> a line still without its newline
        self._displayed: dict[str, int] = {}  # site -> rich outputs already shown
        self._handle = None
        self._text = ""
        if detached:
            from IPython.display import display

            self._handle = display({"text/plain": "waiting for the sites' output..."}, raw=True, display_id=True)
        self._lock = threading.RLock()  # live batches (the event loop) and finish() (the cell's thread)

    def __call__(self, site: str, outputs: list[dict]) -> None:
        for output in outputs:
            if output["name"] == "display":
                self.display(site, output["data"])
            else:
                self.write(site, output["name"], output["text"])

    def display(self, site: str, data: dict) -> None:
        """A rich output of a site (``display()``, a figure), marked with its site."""
        with self._lock:
            self._displayed[site] = self._displayed.get(site, 0) + 1
        if self._handle is not None:
            kinds = ", ".join(sorted(m for m in data if m != "text/plain"))
            self._send("stdout", f"[display:{site}] {data.get('text/plain', '')} ({kinds}; %edge show replays it)\n")
            return
        metadata = {METADATA_KEY: {"site": site}}
        if self._kernel is not None:
            self._kernel.session.send(
                self._kernel.iopub_socket,
                "display_data",
                {"data": data, "metadata": metadata, "transient": {}},
                parent=self._parent,
                ident=b"display_data",
            )
        else:
            from IPython.display import display

            display(data, raw=True, metadata=metadata)

    def write(self, site: str, stream: str, text: str) -> None:
        """A site's text: its finished lines are shown now, labelled; the rest waits for its newline."""
        key = (site, stream)
        with self._lock:
            self._shown[key] = self._shown.get(key, 0) + len(text)
            text = self._unfinished.pop(key, "") + text
            end = text.rfind("\n") + 1
            if end < len(text):
                self._unfinished[key] = text[end:]
            if end:
                self._send(stream, self._label(site, stream, text[:end]))

    def finish(self, result: JobResult) -> None:
        """Show whatever the live stream did not (a batch that arrived late or
        not at all), so the cell always ends with every site's whole output."""
        for site in sorted(result.executions):
            rich = [o["data"] for o in result.executions[site].outputs if o["name"] == "display"]
            for data in rich[self._displayed.get(site, 0) :]:
                self.display(site, data)
            for stream in ("stdout", "stderr"):
                full = "".join(o["text"] for o in result.executions[site].outputs if o["name"] == stream)
                with self._lock:
                    rest = full[self._shown.get((site, stream), 0) :]
                if rest:
                    self.write(site, stream, rest)
        with self._lock:
            for (site, stream), line in sorted(self._unfinished.items()):
                self._send(stream, self._label(site, stream, line + "\n"))
            self._unfinished.clear()

    def _update_handle(self) -> None:
        if self._kernel is None:
            self._handle.update({"text/plain": self._text}, raw=True)
            return
        # Sent under the request running *now*: a kernel attributes output from
        # other threads to the request that started them (long finished here).
        content = {
            "data": {"text/plain": self._text},
            "metadata": {},
            "transient": {"display_id": self._handle.display_id},
        }
        # In an empty context a kernel falls back to its latest request, not
        # to whatever request this thread's context remembers.
        latest = contextvars.Context().run(self._kernel.get_parent)
        self._kernel.session.send(
            self._kernel.iopub_socket, "update_display_data", content, parent=latest, ident=b"update_display_data"
        )

    @staticmethod
    def _label(site: str, stream: str, lines: str) -> str:
        """``lines`` (whole lines, ending in a newline), each with its site's label."""
        return "".join(f"[{stream}:{site}] {line}\n" for line in lines[:-1].split("\n"))

    def _send(self, stream: str, text: str) -> None:
        if self._handle is not None:
            with self._lock:
                self._text += text
                self._update_handle()
            return
        if self._kernel is not None:
            self._kernel.session.send(
                self._kernel.iopub_socket,
                "stream",
                {"name": stream, "text": text},
                parent=self._parent,
                ident=f"stream.{stream}".encode(),
            )
        else:
            target = sys.stdout if stream == "stdout" else sys.stderr
            target.write(text)
            target.flush()
