"""Replaying a job's per-site outputs into the notebook, and the fleet's tables.

Each site's output is labelled with the site, as ipyparallel labels each
engine's (``[stdout:berlin]``, ``Out[berlin]:``), and carries the site in its
display metadata.
"""

from __future__ import annotations

import html
import sys
import time

from IPython.display import display

from ..catalog import Catalog
from ..jobs import JobError, State
from ..result import JobResult
from ..tables import (
    datasets_table,
    gpus_text,
    holders_text,
    human_bytes,
    labels_text,
    round_trip,
    site_state,
    sites_table,
    text_table,
)
from ..versions import versions
from .live import METADATA_KEY, LiveOutput


class EdgeCellError(JobError):
    """Raised by a ``%%edge`` cell some of whose sites failed, after every
    site's output and traceback has been shown; IPython prints just this."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def replay(result: JobResult, streams: bool = True) -> None:
    """Every site's value and error, labelled, in site order; with ``streams``,
    its stdout and stderr first (``%edge show``; a live cell has shown them)."""
    if streams:
        LiveOutput(None).finish(result)
    for site in sorted(result.executions):
        ex = result.executions[site]
        if ex.state == State.DONE:
            if site in result and result[site] is not None:
                show_value(site, result[site])
        else:
            sys.stderr.write(f"[{ex.state.value}:{site}] {ex.error or 'no detail'}\n")
    sys.stdout.flush()
    sys.stderr.flush()


def show_value(site: str, value) -> None:
    """``Out[berlin]: ...``, with the value's richer forms where it has them."""
    bundle = {"text/plain": f"Out[{site}]: {_plain(value)}"}
    rich = _rich(value)
    if "text/html" in rich:
        bundle["text/html"] = f"<div><b>Out[{html.escape(site)}]:</b></div>{rich['text/html']}"
    for mime in ("image/png", "image/svg+xml"):
        if mime in rich:
            bundle[mime] = rich[mime]
    display(bundle, raw=True, metadata={METADATA_KEY: {"site": site}})


def _plain(value) -> str:
    try:
        from IPython.lib.pretty import pretty

        return pretty(value)
    except Exception:  # a repr that fails must not hide the other sites
        return repr(value)


def _rich(value) -> dict:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return {}  # plain values have nothing richer to show; skip IPython's twelve formatters
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            return {}
        data, _ = shell.display_formatter.format(value)
        return data
    except Exception:
        return {}


def discarded_sessions(fleet, result: JobResult) -> list[str]:
    """Sites whose runner had to be killed to stop the job (their session went
    with it), as the sites report it; waits at most the interrupt grace for them."""
    from .. import config

    stopped = {s for s, ex in result.executions.items() if ex.state in (State.CANCELLED, State.TIMED_OUT)}
    deadline = time.monotonic() + config.seconds("runner.interrupt-grace") + 2
    while stopped:
        record = fleet.job(result.job)
        reported = {ex.site: ex for ex in record.executions if ex.site in stopped}
        killed = sorted(s for s, ex in reported.items() if ex.error and "was killed" in ex.error)
        settled = all(ex.error and "at the site" in ex.error for ex in reported.values())
        if settled or time.monotonic() > deadline:
            return killed
        time.sleep(0.1)
    return []


def closing_line(result: JobResult, took: float, catalog: Catalog | None) -> str:
    """What moved: sites ok/failed/lost, seconds, bytes back against bytes that stayed."""
    counts: dict[str, int] = {}
    for ex in result.executions.values():
        label = "ok" if ex.state == State.DONE else ex.state.value
        counts[label] = counts.get(label, 0) + 1
    parts = [f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: kv[0] != "ok")]
    line = f"edge job {result.job}: {', '.join(parts)} in {took:.2f} s; {human_bytes(result.bytes_returned)} returned"
    stayed = _bytes_at_sites(result, catalog)
    if stayed:
        line += f", {human_bytes(stayed)} of data stayed at the sites"
    return line


def _bytes_at_sites(result: JobResult, catalog: Catalog | None) -> int:
    if catalog is None:
        return 0
    total = 0
    for ex in result.executions.values():
        site = catalog.sites.get(ex.site)
        held = site.datasets.get(ex.dataset) if site and ex.dataset else None
        total += held.bytes or 0 if held else 0
    return total


class Table:
    """A table that shows as HTML in Jupyter and as text elsewhere."""

    def __init__(
        self,
        text: str,
        rows: list[list[str]],
        headers: list[str],
        flagged: set[int] = frozenset(),
        muted: set[int] = frozenset(),
    ):
        # flagged rows stand out (a warning); muted ones are greyed (an offline site)
        self.text, self.rows, self.headers, self.flagged, self.muted = text, rows, headers, flagged, muted

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = []
        for i, row in enumerate(self.rows):
            style = ' style="background: var(--jp-warn-color3, #fff3cd)"' if i in self.flagged else ""
            style = ' style="opacity: 0.55"' if i in self.muted else style
            body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def sites_view(catalog: Catalog) -> Table:
    """Sites, with versions that differ from this kernel's flagged."""
    here = versions()
    rows, flagged, notes = [], set(), []
    for i, site in enumerate(sorted(catalog, key=lambda s: s.name)):
        differ = [
            f"{k} {v} (here {here.get(k)})" for k, v in sorted(site.versions.items()) if k in here and v != here[k]
        ]
        if differ:
            flagged.add(i)
            notes.append(f"! {site.name}: {', '.join(differ)}")
        rows.append(
            [
                site.name,
                site_state(site),
                round_trip(site.rtt),
                labels_text(site),
                ", ".join(f"{d.dataset} ({human_bytes(d.bytes)})" for d in site.datasets.values()) or "-",
                gpus_text(site),
                str(site.running),
                "; ".join(differ) or "ok",
            ]
        )
    text = sites_table(catalog) + ("\n" + "\n".join(notes) if notes else "")
    headers = ["site", "state", "round trip", "labels", "datasets", "GPUs", "running", "versions"]
    muted = {i for i, site in enumerate(sorted(catalog, key=lambda s: s.name)) if site.state == "offline"}
    return Table(text, rows, headers, flagged, muted)


def datasets_view(catalog: Catalog) -> Table:
    rows = [
        [
            info.name,
            info.kind,
            ", ".join(f"{s}: {holders_text(catalog, h)}" for s, h in info.shards.items()),
            human_bytes(info.bytes),
            "?" if info.files is None else str(info.files),
        ]
        for info in catalog.datasets().values()
    ]
    return Table(datasets_table(catalog), rows, ["dataset", "kind", "shards: sites", "bytes", "files"])


def jobs_view(records) -> Table:
    rows = []
    for record in records:
        states = ", ".join(
            f"{ex.site}: {ex.state.value}" + (f" ({ex.error})" if ex.state == State.QUEUED and ex.error else "")
            for ex in record.executions
        )
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        targets = ", ".join(f"{k}={v}" for k, v in record.request.items() if v not in (None, False, 0, [], ()))
        rows.append([record.id, when, record.owner, record.source, targets, record.state, states])
    headers = ["job", "when", "owner", "first line", "targets", "state", "sites"]
    return Table(text_table(headers, rows) if rows else "no jobs yet", rows, headers)
