"""The catalog at 1,000 sites (issue 14): ``jupyter-edge status``, the server
extension's ``GET fleet`` and the sidebar stay fast.

The scheduler is the real ``jupyter-edge scheduler`` process. The sites are
simulated (tests/simulated_sites.py): each joins through Dask's own
``register-worker`` (the scheduler's ``add_worker`` admits it, so the plugin
accepts its report as a site's), sends its report on its worker stream as a
``SITE_TOPIC`` event, exactly as ``Worker.log_event`` does, and heartbeats as
Dask asks. A thousand real workers (threads, runners, periodic callbacks) would
not fit on a two-core machine beside the scheduler, JupyterLab and Chromium;
reading the catalog needs only what sites tell the scheduler.

The bounds only catch hangs and quadratic blow-ups, never a tight timing: each
path takes well under a second here (the timings are printed, see ``-s``).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time

import pytest
from browser import Lab, launch_chromium, open_lab, require_browser
from processes import stop_all
from simulated_sites import REGIONS as REGION_CYCLE
from simulated_sites import raise_fd_limit, site_name

from jupyter_edge import Fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SITES = 1000
REGIONS = sorted(REGION_CYCLE)
GROUP = SITES // len(REGIONS)  # sites per region
#: The most any one path may take here: a hang or a blow-up, not a slow machine.
BOUND = 10.0
#: ``jupyter-edge status`` is a new process: Python and Dask start first (about
#: half a second here, several times that on a busy machine).
STATUS_BOUND = 30.0
SIMULATED = os.path.join(os.path.dirname(__file__), "simulated_sites.py")


def timed(what: str, seconds: float) -> float:
    print(f"\n[scale] {what}: {seconds * 1000:.0f} ms at {SITES} sites")
    return seconds


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory):
    """``jupyter-edge scheduler`` with 1,000 simulated sites online."""
    root = tmp_path_factory.mktemp("big-fleet")
    scheduler_file = root / "scheduler.json"
    log = open(root / "scheduler.log", "wb")
    command = ["scheduler", "--port", "0", "--host", "127.0.0.1", "--scheduler-file", str(scheduler_file)]
    # 1,000 sites are 1,000 connections: room for them where the soft limit is 1024.
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "jupyter_edge.cli", *command],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=raise_fd_limit,
    )
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            assert scheduler.poll() is None, f"the scheduler exited: {(root / 'scheduler.log').read_text()}"
            assert time.monotonic() < deadline, "the scheduler wrote no scheduler file in 30 s"
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        start = time.monotonic()
        sites = subprocess.Popen(
            [sys.executable, SIMULATED, address, str(SITES)],
            stdout=subprocess.PIPE,
            stderr=open(root / "sites.log", "wb"),
            text=True,
        )
        procs.insert(0, sites)
        ready, _, _ = select.select([sites.stdout], [], [], 120)
        line = sites.stdout.readline() if ready else ""
        said = (root / "sites.log").read_text()[-3000:]
        assert line.strip() == f"ready {SITES}", f"the simulated sites did not join in 120 s ({line!r}):\n{said}"
        fleet = Fleet.connect(scheduler_file=str(scheduler_file))
        fleet.wait_for_sites(SITES, timeout=60)
        timed("1,000 simulated sites joined and reported", time.monotonic() - start)
        fleet.edge_scheduler_file = str(scheduler_file)
        yield fleet
        fleet.close()
    finally:
        stop_all(procs)


def test_the_catalog_has_every_simulated_site(big_fleet):
    catalog = big_fleet.catalog()
    assert len(catalog) == SITES, f"expected {SITES} sites in the catalog, got {len(catalog)}"
    assert catalog.sites["site-0742"].labels["region"] == "oc", catalog.sites["site-0742"]
    assert len(catalog.datasets()["sensors"].shards) == SITES


def test_status_lists_every_site(big_fleet):
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_edge.cli", "status", "--scheduler-file", big_fleet.edge_scheduler_file],
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = timed("jupyter-edge status (a new process, imports included)", time.monotonic() - start)
    assert out.returncode == 0, out.stderr
    assert f"{SITES} site(s)" in out.stdout, out.stdout[:500]
    listed = re.findall(r"^(site-\d{4}) ", out.stdout, re.MULTILINE)
    assert listed == [site_name(i) for i in range(SITES)], (
        f"expected every site, in order, one line each; got {len(listed)}: {listed[:5]}..."
    )
    assert took < STATUS_BOUND, f"jupyter-edge status took {took:.1f} s at {SITES} sites (bound {STATUS_BOUND} s)"
    # The datasets table stays readable: a dataset held in 1,000 shards is one
    # short row, naming a few shards and counting the rest.
    widest = max(len(line) for line in out.stdout.splitlines())
    assert widest < 400, f"a line of status is {widest} characters wide at {SITES} sites"
    sensors = re.search(r"^sensors .*$", out.stdout, re.MULTILINE)
    assert sensors and f"and {SITES - 5} more shards" in sensors[0], f"the sensors row: {sensors}"


def test_a_dataset_row_names_a_few_shards_and_counts_the_rest():
    """The datasets table's SITES column, without a cluster: whole for a small
    fleet, the first shards (and holders) and how many more for a large one."""
    from jupyter_edge.catalog import Catalog, DatasetShard, Site
    from jupyter_edge.tables import shards_text

    def site(name, offline=False):
        shards = {
            "sensors": DatasetShard("sensors", name, "/d", "local"),
            "weather": DatasetShard("weather", "all", "/w", "local"),
        }
        return Site(name, f"tcp://{name}:1", state="offline" if offline else "running", datasets=shards)

    small = Catalog({s.name: s for s in (site("berlin"), site("paris", offline=True))})
    assert shards_text(small, small.datasets()["sensors"].shards) == "berlin: berlin; paris: paris (offline)"
    assert shards_text(small, small.datasets()["weather"].shards) == "all: berlin,paris (offline)"

    large = Catalog({s.name: s for s in (site(f"s{i:02d}", offline=i >= 10) for i in range(12))})
    assert shards_text(large, large.datasets()["sensors"].shards) == (
        "s00: s00; s01: s01; s02: s02; s03: s03; s04: s04; and 7 more shards (2 held only offline)"
    )
    assert shards_text(large, large.datasets()["weather"].shards) == "all: s00,s01 and 10 more"


def test_status_in_process(big_fleet):
    """What status does once imported: ask the catalog and lay out both tables."""
    from jupyter_edge.tables import datasets_table, sites_table

    start = time.monotonic()
    catalog = big_fleet.catalog()
    asked = time.monotonic()
    sites_table(catalog), datasets_table(catalog)
    done = time.monotonic()
    timed("status's catalog round trip and parse", asked - start)
    timed("status's two tables", done - asked)
    assert done - start < BOUND


@pytest.fixture
def jp_server_config(big_fleet):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_edge": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        "JupyterEdge": {"scheduler_address": big_fleet.address},
    }


async def test_get_fleet_returns_every_site(jp_fetch):
    # No asyncio mark: pytest-jupyter runs this on the server's own loop.
    took = []
    for _ in range(3):  # the first connects; the others are what each poll costs
        start = time.monotonic()
        response = await jp_fetch("jupyter-edge", "api", "fleet")
        model = json.loads(response.body)
        took.append(time.monotonic() - start)
    timed("GET fleet, first (connects)", took[0])
    timed(f"GET fleet, then ({len(response.body) // 1000} kB)", min(took[1:]))
    assert model["connection"]["status"] == "connected", model["connection"]
    names = [s["name"] for s in model["sites"]]
    assert names == [site_name(i) for i in range(SITES)], f"expected {SITES} sites by name, got {len(names)}"
    assert max(took) < BOUND, f"GET fleet took {max(took):.1f} s at {SITES} sites (bound {BOUND} s)"


# --- the sidebar, in headless Chromium ---------------------------------------------


@pytest.fixture(scope="module")
def page(big_fleet, tmp_path_factory):
    """JupyterLab with the sidebar open on the big fleet, its sites counted.

    ``page.edge_render`` is the time from the first ``GET fleet``'s answer to
    the count of sites on the page: parsing, filtering, grouping, rendering."""
    require_browser()
    from playwright.sync_api import sync_playwright

    lab = Lab(tmp_path_factory.mktemp("lab"), big_fleet.address, interval=2000)
    try:
        with sync_playwright() as playwright:
            context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
            # Main-thread tasks over 50 ms, as Chromium's Long Tasks API reports them.
            context.add_init_script(
                "window.__longTasks = []; new PerformanceObserver(list => window.__longTasks.push("
                "...list.getEntries().map(e => e.duration))).observe({entryTypes: ['longtask']});"
            )
            try:
                start = time.monotonic()
                page = open_lab(context, lab)
                counted_at = wait_for_count(page, f"{SITES} sites", 60_000)
                page.edge_opened = time.monotonic() - start
                answered_at = page.evaluate(
                    "performance.getEntriesByType('resource')"
                    ".find(e => e.name.includes('/jupyter-edge/api/fleet')).responseEnd"
                )
                page.edge_render = (counted_at - answered_at) / 1000
                yield page
            finally:
                context.close()
    finally:
        lab.close()


def wait_for_count(page, text: str, timeout_ms: float = 30_000) -> float:
    """Wait, frame by frame, until the sites' count says ``text``; when it did (ms, page clock)."""
    page.evaluate("window.__countedAt = null")
    page.wait_for_function(
        "text => { const ok = document.querySelector('.jp-EdgeSites-count')?.textContent === text;"
        " if (ok && window.__countedAt === null) { window.__countedAt = performance.now(); } return ok; }",
        arg=text,
        polling="raf",
        timeout=timeout_ms,
    )
    return page.evaluate("window.__countedAt")


def long_tasks(page) -> list[float]:
    """Main-thread tasks over 50 ms since the last call (ms)."""
    return page.evaluate("(() => { const t = window.__longTasks; window.__longTasks = []; return t; })()")


class TestSidebar:
    """The sidebar in real JupyterLab polling at its default interval (2 s)."""

    # pytest-jupyter's loop fixtures, replaced for these tests as in tests/browser.py:
    # playwright's sync API keeps its own loop in this thread.
    @pytest.fixture(autouse=True)
    def jp_asyncio_loop(self):
        yield None

    @pytest.fixture(autouse=True)
    def jp_server_cleanup(self):
        yield

    @pytest.mark.browser
    def test_renders_the_fleet(self, page):
        timed("sidebar: JupyterLab loaded, sidebar opened, 1,000 sites counted", page.edge_opened)
        timed("sidebar: first GET fleet answered -> 1,000 sites counted on the page", page.edge_render)
        assert page.locator(".jp-EdgeSites-count").inner_text() == f"{SITES} sites"
        groups = page.eval_on_selector_all(".jp-EdgeSites-group", "els => els.map(e => e.dataset.group)")
        assert groups == REGIONS, groups
        for region in REGIONS:
            group = page.locator(f".jp-EdgeSites-group[data-group='{region}']")
            assert group.locator(".jp-EdgeSites-groupTitle").inner_text() == f"region={region} ({GROUP})"
            # Beyond 200 sites, each group lists its first 25 and offers the rest.
            assert group.locator(".jp-EdgeSite").count() == 25, f"{region} should list 25 of its {GROUP} sites"
            assert group.locator(".jp-EdgeSites-more").inner_text() == f"Show {GROUP - 25} more"
        nodes = page.evaluate("document.querySelector('#jupyter-edge-sidebar').getElementsByTagName('*').length")
        print(f"\n[scale] sidebar: {page.locator('.jp-EdgeSite').count()} site rows, {nodes} elements in the sidebar")

        # A dataset held in 1,000 shards names a few and counts the rest; a shard
        # replicated across a region names a few holders.
        sensors = page.locator(".jp-EdgeDataset[data-dataset='sensors']")
        assert sensors.locator(".jp-EdgeDataset-shard").count() == 12
        assert sensors.locator(".jp-EdgeDataset-more").inner_text() == f"and {SITES - 12} more shards"
        weather = page.locator(".jp-EdgeDataset[data-dataset='weather'] .jp-EdgeDataset-shard").all_inner_texts()
        assert f"eu: site-0000, site-0008, site-0016 and {GROUP - 3} more" in weather, weather

        # Polls keep coming (every 2 s): none may hold the page's main thread long.
        long_tasks(page)
        page.wait_for_timeout(6_000)
        tasks = long_tasks(page)
        timed(
            f"sidebar: longest main-thread task over 6 s of polling ({len(tasks)} over 50 ms)",
            max(tasks, default=0) / 1000,
        )
        assert max(tasks, default=0) < BOUND * 1000 / 5, f"a poll held the page for {max(tasks):.0f} ms: {tasks}"

    @pytest.mark.browser
    def test_the_filter_finds_any_site(self, page):
        assert page.locator(".jp-EdgeSite[data-site='site-0742']").count() == 0, "site-0742 is not listed at first"
        box = page.locator(".jp-EdgeSites-filter input")
        long_tasks(page)
        start = time.monotonic()
        box.press_sequentially("site-0742")  # as a user types it, a render per key
        wait_for_count(page, f"1 of {SITES} sites")
        took = timed("sidebar: typing 'site-0742' until it alone is shown", time.monotonic() - start)
        tasks = long_tasks(page)
        timed(f"sidebar: longest main-thread task while typing ({len(tasks)} over 50 ms)", max(tasks, default=0) / 1000)
        row = page.locator(".jp-EdgeSite[data-site='site-0742']")
        assert row.is_visible(), "site-0742 is not shown after filtering for it"
        assert "region=oc" in row.inner_text()
        assert took < BOUND, f"filtering took {took:.1f} s at {SITES} sites"

        # 200 sites or fewer: every one is listed.
        box.fill("gpu")
        wait_for_count(page, f"20 of {SITES} sites")
        assert page.locator(".jp-EdgeSite").count() == 20
        box.fill("region=oc")
        wait_for_count(page, f"{GROUP} of {SITES} sites")
        assert page.locator(".jp-EdgeSite").count() == GROUP and page.locator(".jp-EdgeSites-more").count() == 0

        start = time.monotonic()
        box.fill("")
        wait_for_count(page, f"{SITES} sites")
        timed("sidebar: clearing the filter until every group is back", time.monotonic() - start)
        assert page.locator(".jp-EdgeSite").count() == 25 * len(REGIONS)

    @pytest.mark.browser
    def test_show_more_lists_the_rest_of_a_group(self, page):
        oc = page.locator(".jp-EdgeSites-group[data-group='oc']")
        oc.locator(".jp-EdgeSites-more").click()
        page.wait_for_function(
            "document.querySelectorAll(\".jp-EdgeSites-group[data-group='oc'] .jp-EdgeSite\").length === 125"
        )
        assert oc.locator(".jp-EdgeSites-more").count() == 0, "every oc site is listed: no more to show"
        assert oc.locator(".jp-EdgeSite[data-site='site-0742']").count() == 1
        # The other groups still list 25; a poll keeps what was shown.
        page.wait_for_timeout(2_500)
        assert oc.locator(".jp-EdgeSite").count() == GROUP
        assert page.locator(".jp-EdgeSites-group[data-group='eu'] .jp-EdgeSite").count() == 25
