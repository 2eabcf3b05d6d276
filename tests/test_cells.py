"""Cells at the sites through the Fleet API: live output, sessions, concurrency."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from distributed import Client

from jupyter_edge import Fleet, State
from jupyter_edge.local import SiteSpec, local_cluster


def test_output_arrives_while_the_cell_runs(fleet):
    seen, first = [], threading.Event()

    def on_output(site, outputs):
        seen.extend((site, o["name"], o["text"]) for o in outputs)
        first.set()

    job = fleet.submit_cell(
        "print('early', flush=True)\nimport time\ntime.sleep(30)", sites=["tokyo"], on_output=on_output, timeout=60
    )
    try:
        assert first.wait(10), "no output arrived while the cell was still running"
        assert not job.done()
        assert seen == [("tokyo", "stdout", "early\n")]
    finally:
        job.cancel()
    assert job.executions[0].state == State.CANCELLED


#: A cell's value, as IPython decides it: the same cases for every executor
#: (tests/test_containers.py runs them in containers).
VALUE_CASES = [
    ("x = 2\nx * 21", 42),
    ("x = 2\nx * 21;", None),
    ("x = 2\nx * 21;  # nothing to show\n\n", None),
    ("y = 1", None),
    ("x = 1; x + 1", 2),
    ("'a;b'", "a;b"),
    ("7  # a comment that ends with;", 7),
    ("if True:\n    z = 3\nz", 3),
]


@pytest.mark.parametrize(("source", "value"), VALUE_CASES)
def test_value_is_the_last_expression(fleet, source, value):
    res = fleet.run_cell(source, sites=["berlin"], timeout=60)
    assert dict(res) == {"berlin": value}, f"the cell {source!r} should have the value {value!r}"


def test_a_syntax_error_fails_before_anything_runs(fleet):
    with pytest.raises(SyntaxError):
        fleet.run_cell("def broken(:\n  pass", sites=["berlin"])


def test_traceback_shows_the_cells_lines(fleet):
    res = fleet.run_cell("a = 1\nb = 0\na / b", sites=["berlin"])
    error = res.executions["berlin"].error
    assert "a / b" in error and "ZeroDivisionError" in error and "runner_main" not in error, error


@pytest.fixture(scope="module")
def two_thread_site():
    cluster = local_cluster([SiteSpec("lyon", {"region": "eu"}, nthreads=2)])
    fleet = Fleet(Client(cluster, set_as_default=False))
    fleet.wait_for_sites(1)
    yield fleet
    fleet.close()
    cluster.close()


def test_two_cells_at_once_on_one_site_keep_their_outputs_apart(two_thread_site):
    fleet = two_thread_site
    source = "import time\nfor i in range(20):\n    print(TAG, i, flush=True)\n    time.sleep(0.05)\nTAG"
    a = fleet.submit_cell(source, names={"TAG": "alpha"}, sites=["lyon"], timeout=60)
    b = fleet.submit_cell(source, names={"TAG": "beta"}, sites=["lyon"], timeout=60)
    ra, rb = a.result(60), b.result(60)
    assert (ra["lyon"], rb["lyon"]) == ("alpha", "beta")
    started = [ra.executions["lyon"].started, rb.executions["lyon"].started]
    ended = [ra.executions["lyon"].ended, rb.executions["lyon"].ended]
    assert max(started) < min(ended), "the two cells were meant to overlap"
    for res, tag, other in ((ra, "alpha", "beta"), (rb, "beta", "alpha")):
        text = "".join(o["text"] for o in res.outputs["lyon"])
        assert text == "".join(f"{tag} {i}\n" for i in range(20)) and other not in text


def test_sessions_of_two_notebooks_are_isolated(two_thread_site):
    fleet = two_thread_site
    fleet.run_cell("secret = 'mine'", session="notebook-a", sites=["lyon"])
    fleet.run_cell("secret = 'yours'", session="notebook-b", sites=["lyon"])
    assert dict(fleet.run_cell("secret", session="notebook-a", sites=["lyon"])) == {"lyon": "mine"}
    assert dict(fleet.run_cell("secret", session="notebook-b", sites=["lyon"])) == {"lyon": "yours"}
    res = fleet.run_cell("secret", session="notebook-c", sites=["lyon"])
    assert "NameError" in res.executions["lyon"].error


def test_interrupted_cell_keeps_the_session_when_it_stops_cleanly(two_thread_site):
    fleet = two_thread_site
    fleet.run_cell("kept = 5", session="nb-int", sites=["lyon"])
    job = fleet.submit_cell("import time\ntime.sleep(30)", session="nb-int", sites=["lyon"])
    time.sleep(1.0)
    job.cancel()
    assert job.executions[0].state == State.CANCELLED
    assert dict(fleet.run_cell("kept", session="nb-int", sites=["lyon"], timeout=30)) == {"lyon": 5}


def test_idle_sessions_are_reaped(two_thread_site):
    import dask.config

    fleet = two_thread_site
    with dask.config.set({"edge.session-idle": "0.5s"}):
        fleet.run_cell("short_lived = 1", session="nb-idle", sites=["lyon"])
        assert dict(fleet.run_cell("short_lived", session="nb-idle", sites=["lyon"])) == {"lyon": 1}
        time.sleep(1.0)
        res = fleet.run_cell("short_lived", session="nb-idle", sites=["lyon"])
    assert "NameError" in res.executions["lyon"].error, "an idle session must be forgotten"


def test_modules_travel_by_name(fleet):
    import json

    from jupyter_edge.cells import names_to_send, pack_names

    names = names_to_send("json.dumps({'a': 1})", {"json": json, "unused": 1})
    assert names == {"json": json}
    assert len(pack_names(names)) < 100, "a module is sent as its name, not its contents"
    assert dict(fleet.run_cell("json.dumps({'a': 1})", names=names, sites=["tokyo"])) == {"tokyo": '{"a": 1}'}


def test_ipythons_own_display_comes_back_rich(fleet):
    """A cell written as notebooks are written imports IPython's ``display``; its
    objects come back as their rich forms, not as ``<IPython.core.display.HTML object>``."""
    source = (
        "from IPython.display import HTML, Markdown, display\n"
        "import pandas as pd\n"
        "display(HTML(f'<b>hello from {site.name}</b>'))\n"
        "print('between')\n"
        "display(pd.DataFrame({'x': [1, 2]}), Markdown('*md*'))\n"
    )
    res = fleet.run_cell(source, sites=["berlin"], timeout=60)
    assert res.ok, res.errors
    outputs = res.outputs["berlin"]
    printed = "".join(o.get("text", "") for o in outputs if o["name"] == "stdout")
    assert "IPython.core.display" not in printed, f"display() printed reprs instead of sending them: {printed!r}"
    assert [o["name"] for o in outputs] == ["display", "stdout", "display", "display"], outputs
    html, _, frame, markdown = outputs
    assert html["data"]["text/html"] == "<b>hello from berlin</b>"
    assert "<table" in frame["data"]["text/html"] and "text/plain" in frame["data"]
    assert markdown["data"]["text/markdown"] == "*md*"


def test_matplotlib_show_sends_the_figure_where_it_is_called(fleet):
    source = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"
        "print('after the first figure')\n"
        "from IPython.display import display\n"
        "fig, ax = plt.subplots()\n"
        "ax.bar([1, 2], [3, 4])\n"
        "display(fig)\n"
        "plt.close(fig)\n"
    )
    res = fleet.run_cell(source, sites=["paris"], timeout=60)
    assert res.ok, res.errors
    outputs = res.outputs["paris"]
    assert [o["name"] for o in outputs] == ["display", "stdout", "display"], (
        f"expected the shown figure, the print, the displayed figure, in that order: {outputs}"
    )
    for figure in (outputs[0], outputs[2]):
        png = base64.b64decode(figure["data"]["image/png"])
        assert png.startswith(b"\x89PNG"), "a figure should arrive as a PNG"
