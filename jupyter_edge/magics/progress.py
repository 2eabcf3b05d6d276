"""The progress of a running ``%%edge`` cell: each site's state and elapsed time.

An ipywidgets view while the job runs, replaced through its display id by a
static summary when it ends, so a saved notebook holds no dead widget. Without
ipywidgets (a terminal, a plain kernel), one text line at the start instead.
"""

from __future__ import annotations

import html
import threading
import time

from IPython.display import HTML, display

from ..jobs import State

_COLOURS = {
    State.QUEUED: "var(--jp-ui-font-color3, #aaa)",
    State.PENDING: "var(--jp-ui-font-color2, #888)",
    State.RUNNING: "var(--jp-brand-color1, #1976d2)",
    State.DONE: "var(--jp-success-color1, #388e3c)",
    State.FAILED: "var(--jp-error-color1, #d32f2f)",
    State.LOST: "var(--jp-error-color1, #d32f2f)",
    State.TIMED_OUT: "var(--jp-warn-color1, #f57c00)",
    State.CANCELLED: "var(--jp-warn-color1, #f57c00)",
}


class Progress:
    def __init__(self, job, refresh: float = 0.5):
        self.job = job
        self.started = time.time()
        self._widget = None
        self._stop = threading.Event()
        try:
            import ipywidgets
        except ImportError:
            ipywidgets = None
        shell = _shell()
        if ipywidgets is None or shell is None or not hasattr(shell, "kernel"):
            sites = ", ".join(sorted({ex.site for ex in job.executions}))
            print(f"edge job {job.id} running at {sites} ...")
            return
        self._widget = ipywidgets.HTML(value=self.html())
        self._handle = display(self._widget, display_id=True)
        job.on_state = lambda ex: self.refresh()
        threading.Thread(target=self._tick, args=(refresh,), daemon=True, name="edge-progress").start()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self.refresh()

    def refresh(self) -> None:
        if self._widget is not None:
            self._widget.value = self.html()

    def close(self) -> None:
        """Replace the live view with a static one."""
        self._stop.set()
        if self._widget is not None:
            self._handle.update(HTML(self.html()))
            self._widget.close()

    def html(self) -> str:
        now = time.time()
        rows = []
        for ex in sorted(self.job.executions, key=lambda e: e.site):
            start = ex.started or ex.submitted or self.started
            elapsed = (ex.ended or now) - start
            colour = _COLOURS.get(ex.state, "inherit")
            state = ex.state.value
            if ex.state == State.QUEUED and ex.error:  # and why it waits
                state = f"{state}: {ex.error}"
            rows.append(
                f"<tr><td>{html.escape(ex.site)}</td>"
                f"<td style='color:{colour}'>{html.escape(state)}</td><td>{elapsed:.1f} s</td></tr>"
            )
        return (
            f"<div><b>edge job {html.escape(self.job.id)}</b> "
            f"<table><thead><tr><th>site</th><th>state</th><th>elapsed</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )


def _shell():
    from IPython import get_ipython

    return get_ipython()
