"""The sidebar in real JupyterLab, in headless Chromium, against a demo fleet
started by the CLI: sites and datasets listed, a site joining and leaving
without a reload, a dataset click inserting its cell, a notebook's job showing
each site's state live, and a cancel from the sidebar."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from browser import (  # the two fixtures replace pytest-jupyter's for this module
    Lab,
    jp_asyncio_loop,  # noqa: F401
    jp_server_cleanup,  # noqa: F401
    launch_chromium,
    open_lab,
    require_browser,
)

from jupyter_edge import Fleet

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

DEMO_SITES = ["berlin", "boston", "paris", "tokyo"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``jupyter-edge demo`` as a user starts it (no S3: that has its own tests)."""
    require_browser()
    root = tmp_path_factory.mktemp("demo")
    scheduler_file = root / "scheduler.json"
    log = open(root / "demo.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "demo",
            "--port",
            "0",
            "--no-s3",
            "--data-dir",
            str(root / "data"),
            "--scheduler-file",
            str(scheduler_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        assert proc.poll() is None, f"the demo exited: {(root / 'demo.log').read_text()}"
        assert time.monotonic() < deadline, "the demo wrote no scheduler file in 60 s"
        time.sleep(0.1)
    fleet = Fleet.connect(scheduler_file=str(scheduler_file))
    fleet.wait_for_sites(len(DEMO_SITES), timeout=60)
    fleet.edge_root = root
    yield fleet
    fleet.close()
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def lab(demo, tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"), demo.address)
    yield server
    server.close()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield open_lab(context, lab)
        finally:
            context.close()


def site_names(page) -> list[str]:
    return page.eval_on_selector_all(".jp-EdgeSite", "els => els.map(e => e.dataset.site)")


def test_sidebar_lists_sites_datasets_and_gpus(page, demo):
    page.wait_for_function(f"document.querySelectorAll('.jp-EdgeSite').length === {len(DEMO_SITES)}")
    assert sorted(site_names(page)) == DEMO_SITES
    connection = page.locator(".jp-EdgeConnection")
    assert connection.get_attribute("data-status") == "connected"
    assert demo.address in connection.inner_text()

    # Grouped by region (the default), each group naming its label and count.
    groups = page.eval_on_selector_all(".jp-EdgeSites-group", "els => els.map(e => e.dataset.group)")
    assert groups == ["ap", "eu", "us"], f"expected region groups ap, eu, us; got {groups}"
    eu = page.eval_on_selector_all(
        ".jp-EdgeSites-group[data-group='eu'] .jp-EdgeSite", "els => els.map(e => e.dataset.site)"
    )
    assert eu == ["berlin", "paris"]

    # Dataset badges with sizes, as the catalog reports them.
    catalog = demo.catalog(fresh=True)
    berlin = page.locator(".jp-EdgeSite[data-site='berlin']")
    badges = berlin.locator(".jp-EdgeBadge[data-dataset]").all_inner_texts()
    assert sorted(b.split()[0] for b in badges) == sorted(catalog.sites["berlin"].datasets)
    assert all(("B" in b) for b in badges), f"every badge shows a size: {badges}"

    # Each site's round trip to the scheduler, once it has sent a heartbeat.
    page.wait_for_function(
        f"document.querySelectorAll('.jp-EdgeSite-rtt').length === {len(DEMO_SITES)}", timeout=30_000
    )
    rtts = page.locator(".jp-EdgeSite-rtt").all_inner_texts()
    assert all(re.fullmatch(r"\d+ ms", t) for t in rtts), f"round trips beside the sites, in ms: {rtts}"

    # boston declares one NVIDIA T4: its bar is there, vendor and memory, with no live sample (declared).
    gpu = page.locator(".jp-EdgeSite[data-site='boston'] .jp-EdgeGPU")
    assert gpu.count() == 1
    assert gpu.get_attribute("data-vendor") == "nvidia"
    text = gpu.inner_text()
    assert "GPU 0 NVIDIA T4" in text and "nvidia" in text and "17.2 GB" in text and "n/a" in text, text
    assert "declared by the site" in gpu.get_attribute("title")
    assert page.locator(".jp-EdgeSite[data-site='berlin'] .jp-EdgeGPU").count() == 0
    # The labels a site sets itself are there, set apart from those it was given.
    own = page.locator(".jp-EdgeSite[data-site='berlin'] .jp-EdgeLabel.jp-mod-own").all_inner_texts()
    assert "edge.executor=python,wasm" in own and "region=eu" not in own, own
    # Every demo site runs WebAssembly modules: each is badged.
    assert page.locator(".jp-EdgeSite .jp-EdgeBadge-wasm").count() == len(DEMO_SITES)

    # The datasets section: every dataset, weather with its three shards.
    datasets = page.eval_on_selector_all(".jp-EdgeDataset", "els => els.map(e => e.dataset.dataset)")
    assert datasets == sorted(catalog.datasets()), datasets
    weather = page.locator(".jp-EdgeDataset[data-dataset='weather'] .jp-EdgeDataset-shard").all_inner_texts()
    assert sorted(weather) == ["ap: tokyo", "eu: berlin, paris", "us: boston"], weather


def test_filter_narrows_the_sites(page):
    box = page.locator(".jp-EdgeSites-filter input")
    box.fill("gpu")
    page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 1")
    assert site_names(page) == ["boston"]
    box.fill("nvidia")  # a GPU vendor
    page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 1")
    assert site_names(page) == ["boston"]
    box.fill("wasm boston")
    page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 1")
    assert site_names(page) == ["boston"]
    box.fill("region=eu")
    page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 2")
    assert sorted(site_names(page)) == ["berlin", "paris"]
    assert "2 of 4 sites" in page.locator(".jp-EdgeSites-count").inner_text()
    box.fill("")
    page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 4")


def test_a_site_joining_and_leaving_shows_without_a_reload(page, demo, tmp_path):
    page.evaluate("window.__edgeNoReload = true")
    data = tmp_path / "lyon-sensors"
    data.mkdir()
    (data / "readings.csv").write_text("t,value\n0,1.5\n")
    site = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_edge.cli",
            "worker",
            demo.address,
            "--name",
            "lyon",
            "--host",
            "127.0.0.1",
            "--label",
            "region=eu",
            "--dataset",
            f"sensors={data}",
        ],
        stdout=open(tmp_path / "lyon.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        page.wait_for_selector(".jp-EdgeSites-group[data-group='eu'] .jp-EdgeSite[data-site='lyon']", timeout=60_000)
        assert page.locator(".jp-EdgeSite[data-site='lyon'] .jp-EdgeBadge").inner_text().startswith("sensors")
    finally:
        site.terminate()
        site.wait(30)
    # A site that left stays listed, greyed, with when it was last seen.
    page.wait_for_selector(".jp-EdgeSite[data-site='lyon'][data-state='offline']", timeout=60_000)
    said = page.locator(".jp-EdgeSite[data-site='lyon'] .jp-EdgeSite-offline").inner_text()
    assert re.fullmatch(r"offline, seen \d+ (s|min) ago", said), said
    opacity = page.eval_on_selector(".jp-EdgeSite[data-site='lyon']", "e => getComputedStyle(e).opacity")
    assert float(opacity) < 1, f"an offline site should be greyed, its opacity is {opacity}"
    assert page.evaluate("window.__edgeNoReload") is True, "the page reloaded"


def run_command(page, command: str, args: dict | None = None, wait: bool = True) -> None:
    """Run a JupyterLab command as the palette would (its result stays in the page);
    ``wait=False`` returns at once (running cells resolves only once they finish)."""
    page.evaluate(
        "([id, args, wait]) => { const done = window.jupyterapp.commands.execute(id, args);"
        " return wait ? done.then(() => null) : null; }",
        [command, args or {}, wait],
    )


def active_cell_source(page) -> str:
    return page.evaluate("window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.getSource()")


def test_clicking_a_dataset_inserts_its_cell(page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # Hold the new notebook's file on its way from the server, and click while
    # it is held: the notebook shows a placeholder cell then, which loading the
    # file replaces, so a cell inserted before the load would be lost (it was,
    # now and then, before the insert waited for the load).
    notebook_file = re.compile(r"/api/contents/Untitled[^/?]*\.ipynb\?.*content=1")
    held = []

    def hold(route):
        held.append(route)

    page.route(notebook_file, hold)
    try:
        run_command(page, "notebook:create-new", {"kernelName": "python3"})
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        page.wait_for_function("window.jupyterapp.shell.currentWidget?.context?.isReady === false")
        page.click(".jp-EdgeDataset[data-dataset='weather']")
        page.wait_for_timeout(300)  # time for an early insert to happen, were it to
        assert held, "the new notebook's file was never requested"
    finally:
        for route in held:
            route.continue_()
        page.unroute(notebook_file)
    page.wait_for_function("window.jupyterapp.shell.currentWidget.context.isReady")
    with contextlib.suppress(PlaywrightTimeout):  # the assertion below says what came instead
        page.wait_for_function(
            "window.jupyterapp.shell.currentWidget.content.activeCell"
            ".model.sharedModel.getSource().startsWith('%%edge')",
            timeout=10_000,
        )
    sources = page.evaluate(
        "window.jupyterapp.shell.currentWidget.content.model.sharedModel.cells.map(c => c.getSource())"
    )
    assert [source.splitlines()[:1] for source in sources] == [["%%edge --data weather"]], (
        f"expected the new notebook to hold one cell, the dataset's %%edge cell; it holds {sources}"
    )
    assert active_cell_source(page).splitlines()[0] == "%%edge --data weather"
    # The editor shows it too, not only the model.
    page.wait_for_selector(".jp-Notebook .jp-Cell.jp-mod-active .cm-content:has-text('%%edge --data weather')")


def set_cells(page, sources: list[str]) -> None:
    """Replace the open notebook's cells with code cells holding ``sources``."""
    page.evaluate(
        """sources => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        const shared = nb.model.sharedModel;
        shared.transact(() => {
            shared.deleteCellRange(0, shared.cells.length);
            shared.insertCells(0, sources.map(s => ({cell_type: 'code', source: s, metadata: {}})));
        });
    }""",
        sources,
    )


def ready_notebook(page) -> None:
    """Make sure a notebook is the current widget and its file has loaded (until
    then, loading replaces whatever cells it shows)."""
    if not page.evaluate("!!window.jupyterapp.shell.currentWidget?.content?.model?.sharedModel?.cells"):
        run_command(page, "notebook:create-new", {"kernelName": "python3"})
    page.wait_for_function("window.jupyterapp.shell.currentWidget.context.isReady")


def wait_for_kernel_idle(page) -> None:
    page.wait_for_function(
        "(() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;"
        " return s.session && s.session.kernel && s.session.kernel.status === 'idle'; })()",
        timeout=90_000,
    )


def newest_job(demo, source_part: str, page, timeout: float = 60):
    """The job whose first line (what the registry keeps) holds ``source_part``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in demo.jobs(limit=10):
            if source_part in job.source:
                return job
        time.sleep(0.2)
    cells = page.locator(".jp-Notebook").inner_text()
    raise AssertionError(
        f"no job running {source_part!r} reached the registry in {timeout:.0f}s; the notebook shows:\n{cells}"
    )


def execution_states(page, job_id: str) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all(
            f".jp-EdgeJob[data-job='{job_id}'] .jp-EdgeExecution",
            "els => els.map(e => [e.dataset.site, e.dataset.state])",
        )
    )


def test_a_notebook_job_shows_each_sites_state_live(page, demo):
    ready_notebook(page)
    wait_for_kernel_idle(page)
    set_cells(
        page,
        [
            "%load_ext jupyter_edge",
            "%%edge --data weather\nimport time  # browser-test-live\ntime.sleep(3)\nprint('read', dataset.path)",
        ],
    )
    run_command(page, "notebook:run-all-cells", wait=False)
    job = newest_job(demo, "browser-test-live", page)
    sites = sorted(ex.site for ex in job.executions)
    assert len(sites) == 3, f"weather has three shards: one execution each, got {sites}"

    # Live: the sidebar shows the executions running, then done, without a reload.
    page.wait_for_selector(f".jp-EdgeJob[data-job='{job.id}'] .jp-EdgeExecution[data-state='running']")
    page.wait_for_function(
        f"[...document.querySelectorAll(\".jp-EdgeJob[data-job='{job.id}'] .jp-EdgeExecution\")]"
        ".filter(e => e.dataset.state === 'done').length === 3",
        timeout=60_000,
    )
    assert execution_states(page, job.id) == dict.fromkeys(sites, "done")
    # And the cell shows each site's output, labelled by site.
    outputs = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea").inner_text()
    for site in sites:
        assert site in outputs, f"{site}'s output is missing from the cell: {outputs!r}"


def test_cancel_from_the_sidebar_stops_the_job(page, demo):
    ready_notebook(page)
    wait_for_kernel_idle(page)
    set_cells(page, ["%%edge --data logs\nimport time  # browser-test-cancel\ntime.sleep(120)"])
    run_command(page, "notebook:run-all-cells", wait=False)
    job = newest_job(demo, "browser-test-cancel", page)
    page.wait_for_function(
        f"[...document.querySelectorAll(\".jp-EdgeJob[data-job='{job.id}'] .jp-EdgeExecution\")]"
        ".some(e => e.dataset.state === 'running')"
    )
    page.click(f".jp-EdgeJob[data-job='{job.id}'] .jp-EdgeJob-cancel")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "(() => { const s = [...document.querySelectorAll("
            f"\".jp-EdgeJob[data-job='{job.id}'] .jp-EdgeExecution\")];"
            " return s.length > 0 && s.every(e => e.dataset.state === 'cancelled'); })()",
            timeout=30_000,
        )
    except PlaywrightTimeout:
        registry = {ex.site: ex.state.value for ex in demo.job(job.id).executions}
        raise AssertionError(
            f"expected every execution cancelled; the sidebar shows {execution_states(page, job.id)},"
            f" the registry {registry}"
        ) from None
    assert page.locator(f".jp-EdgeJob[data-job='{job.id}'] .jp-EdgeJob-cancel").count() == 0
    record = demo.job(job.id)
    assert {ex.state.value for ex in record.executions} == {"cancelled"}
    wait_for_kernel_idle(page)  # the cell that asked finished too


def test_watching_another_fleet_and_back_from_the_announced_list(page, demo):
    """An unreachable address is a state with its reason; the fleet the notebook's
    kernel connected to (announced in the runtime folder) is one click away."""
    connection = page.locator(".jp-EdgeConnection")
    connection.locator("input").fill("tcp://127.0.0.1:9")
    connection.locator("button[type='submit']").click()
    page.wait_for_selector(".jp-EdgeConnection[data-status='unreachable']", timeout=60_000)
    assert connection.locator(".jp-EdgeConnection-error").first.inner_text().strip(), "no reason shown"
    page.wait_for_function("document.querySelectorAll('.jp-EdgeSite').length === 0")
    announced = connection.locator(".jp-EdgeConnection-announced button", has_text=demo.address)
    announced.click()
    page.wait_for_selector(".jp-EdgeConnection[data-status='connected']", timeout=60_000)
    page.wait_for_function(
        f"document.querySelectorAll(\".jp-EdgeSite[data-state='running']\").length === {len(DEMO_SITES)}"
    )
    assert demo.address in connection.locator(".jp-EdgeConnection-address").inner_text()


def test_screenshot_of_the_sidebar(page, tmp_path):
    """The README's picture: saved under docs/ when JUPYTER_EDGE_SCREENSHOTS names a folder."""
    page.wait_for_function("document.querySelectorAll(\".jp-EdgeSite[data-state='running']\").length === 4")
    # Widen the sidebar as a user would: drag the handle between it and the notebook.
    sidebar = page.locator("#jupyter-edge-sidebar").bounding_box()
    page.mouse.move(sidebar["x"] + sidebar["width"] + 2, sidebar["y"] + 300)
    page.mouse.down()
    page.mouse.move(sidebar["x"] + 420, sidebar["y"] + 300, steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)
    path = tmp_path / "sidebar.png"
    page.locator("#jupyter-edge-sidebar").screenshot(path=str(path))
    assert path.stat().st_size > 10_000, "the screenshot is suspiciously small"
    target = os.environ.get("JUPYTER_EDGE_SCREENSHOTS")
    if target:
        shutil.copy(path, os.path.join(target, "sidebar.png"))
