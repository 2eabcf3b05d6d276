"""The Fleet API on a real in-process fleet with a mixed set of sites."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from jupyter_edge import JobError, PlacementError, State

# Module-level functions of a test module would be pickled by reference and the
# sites cannot import this module; a lambda travels by value, as notebook code does.
whoami = lambda site: site.name  # noqa: E731


def test_sites_and_datasets_reported(fleet):
    sites = {s.name: s for s in fleet.sites()}
    assert set(sites) == {"berlin", "paris", "boston", "tokyo"}
    import platform

    # The labels it was given, and those it sets itself (no GPUs: no edge.gpu.*).
    assert sites["berlin"].labels == {
        "region": "eu",
        "tier": "factory",
        "edge.arch": platform.machine(),
        "edge.os": "linux",
        "edge.executor": "python",
    }
    assert sites["boston"].labels["edge.gpu.count"] == "2"
    assert sites["boston"].gpu_count == 2 and sites["boston"].gpu_state == "declared"
    assert sites["tokyo"].gpu_count == 0 and sites["tokyo"].gpu_state == "none"
    assert sites["berlin"].datasets["sensors"].files == 1
    assert sites["berlin"].datasets["sensors"].bytes > 0
    assert "distributed" in sites["paris"].versions and "python" in sites["paris"].versions
    datasets = fleet.datasets()
    assert datasets["weather"].shards == {"eu": ["berlin", "paris"], "us": ["boston"]}
    assert datasets["sensors"].sites == ["berlin", "boston", "paris"]


def test_dataset_runs_once_per_shard_on_its_holder(fleet):
    res = fleet.run(lambda dataset, site: (site.name, set(dataset.read_parquet().site)), data="sensors")
    assert res.ok, res.errors
    assert dict(res) == {name: (name, {name}) for name in ("berlin", "paris", "boston")}


def test_where_narrows_the_shards(fleet):
    res = fleet.run(whoami, data="sensors", where="region=eu")
    assert sorted(res) == ["berlin", "paris"]


def test_replicas_give_one_execution_per_shard(fleet):
    res = fleet.run(lambda dataset: dataset.shard, data="weather")
    shards = sorted(res.values())
    assert shards == ["eu", "us"], f"expected one execution per shard, got {dict(res)}"
    assert len(res.executions) == 2


def test_named_sites_and_no_dataset(fleet):
    res = fleet.run(lambda dataset, site: (dataset, site.name), sites=["tokyo", "paris"])
    assert dict(res) == {"tokyo": (None, "tokyo"), "paris": (None, "paris")}


def test_gpu_request_lands_only_where_gpus_are(fleet):
    def visible(site):
        import os

        return os.environ.get("CUDA_VISIBLE_DEVICES"), [g["index"] for g in site.gpus]

    res = fleet.run(visible, gpus=1)
    assert list(res) == ["boston"], "a GPU request must never land on a site without one"
    devices, held = res["boston"]
    assert devices in ("0", "1") and held == [int(devices)]
    res = fleet.run(visible, gpus=2)
    assert res["boston"][0] in ("0,1", "1,0")


def test_gpu_request_nobody_can_satisfy_fails_at_once(fleet):
    before = len(fleet.jobs())
    with pytest.raises(PlacementError, match="no site has 3 GPUs"):
        fleet.submit(whoami, gpus=3)
    with pytest.raises(PlacementError, match="none matches region=eu and 1 GPU"):
        fleet.submit(whoami, data="sensors", where="region=eu", gpus=1)
    assert len(fleet.jobs()) == before, "an unsatisfiable request must not register a job"


def test_no_target_and_unknown_names(fleet):
    with pytest.raises(PlacementError, match="no target"):
        fleet.submit(whoami)
    with pytest.raises(PlacementError, match="did you mean 'sensors'"):
        fleet.submit(whoami, data="sensros")
    with pytest.raises(PlacementError, match="no site named 'lisbon'"):
        fleet.submit(whoami, sites=["lisbon"])


def test_one_failure_keeps_the_other_results(fleet):
    def maybe_fail(site):
        if site.name == "paris":
            raise RuntimeError("sensor bus down at paris")
        return site.name.upper()

    res = fleet.run(maybe_fail, where="region=eu")
    assert dict(res) == {"berlin": "BERLIN"}
    assert not res.ok
    assert list(res.errors) == ["paris"]
    ex = res.executions["paris"]
    assert ex.state == State.FAILED and ex.error_type == "RuntimeError"
    assert "sensor bus down at paris" in ex.error and "maybe_fail" in ex.error, ex.error
    with pytest.raises(JobError, match=r"\[paris\] failed: RuntimeError: sensor bus down"):
        res.raise_for_errors()


def test_outputs_are_captured_per_execution(fleet):
    def noisy(site):
        import os
        import sys
        import threading

        print("python print from", site.name)
        os.write(1, f"C-level write from {site.name}\n".encode())
        print("to stderr", file=sys.stderr)
        t = threading.Thread(target=lambda: print("from a thread at", site.name))
        t.start()
        t.join()
        return 1

    res = fleet.run(noisy, where="region=eu")
    for name in ("berlin", "paris"):
        stdout = "".join(o["text"] for o in res.outputs[name] if o["name"] == "stdout")
        stderr = "".join(o["text"] for o in res.outputs[name] if o["name"] == "stderr")
        assert f"python print from {name}" in stdout
        assert f"C-level write from {name}" in stdout
        assert f"from a thread at {name}" in stdout
        other = "paris" if name == "berlin" else "berlin"
        assert other not in stdout, "one execution's output must not leak into another's"
        assert stderr == "to stderr\n"


def test_job_result_frame_and_registry(fleet):
    res = fleet.run(
        lambda dataset: dataset.read_parquet().groupby("device").value.mean(), data="sensors", where="region=eu"
    )
    frame = res.to_frame()
    assert set(frame.site) == {"berlin", "paris"}
    assert len(frame) == 6 and "value" in frame.columns
    record = fleet.job(res.job)
    assert record.state == "done"
    assert {ex.site for ex in record.executions} == {"berlin", "paris"}
    assert all(ex.started and ex.ended and ex.bytes_returned > 0 for ex in record.executions)
    scalars = fleet.run(lambda: 3, sites=["tokyo"]).to_frame()
    assert scalars.to_dict("records") == [{"site": "tokyo", "value": 3}]


def test_result_over_the_limit_fails_with_size_and_cap(fleet):
    import dask.config

    with dask.config.set({"edge.result-limit": "10kB"}):
        res = fleet.run(lambda: b"x" * 50_000, sites=["tokyo"])
    ex = res.executions["tokyo"]
    assert ex.state == State.FAILED and ex.error_type == "ResultTooLarge"
    assert "10,000 bytes" in ex.error and "50,0" in ex.error, ex.error
    assert ex.bytes_returned == 0


def test_args_kwargs_and_submit(fleet):
    job = fleet.submit(lambda a, b=0, site=None: (a, b, site.name), 1, sites=["berlin"], kwargs={"b": 2})
    assert job.wait(60), "the job did not finish in 60 s"
    assert dict(job.result()) == {"berlin": (1, 2, "berlin")}
    assert [ex.state for ex in job.executions] == [State.DONE]


def test_bad_arguments_are_clear(fleet):
    with pytest.raises(ValueError, match="gpus must be"):
        fleet.submit(whoami, gpus=-1)
    with pytest.raises(ValueError, match="bad selector"):
        fleet.submit(whoami, where="region=")
    with pytest.raises(ValueError, match="timeout must be"):
        fleet.submit(whoami, all=True, timeout=0)


def test_dataframe_values_travel(fleet):
    res = fleet.run(lambda dataset: dataset.read_parquet().head(2), data="sensors", sites=["boston"])
    assert isinstance(res["boston"], pd.DataFrame) and list(res["boston"].site) == ["boston", "boston"]


def test_rescans_update_the_catalog_and_sites_join_and_leave(tmp_path):
    import time

    import dask.config
    from distributed import Client

    from jupyter_edge import Fleet
    from jupyter_edge.local import SiteSpec, local_cluster
    from jupyter_edge.site.dataset import DatasetDeclaration

    folder = tmp_path / "shard"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    with dask.config.set({"edge.rescan-interval": "0.2s"}):
        cluster = local_cluster([SiteSpec("lisbon", datasets=[DatasetDeclaration("logs", str(folder), "lisbon")])])
        with Fleet(Client(cluster, set_as_default=False)) as fleet:
            fleet.wait_for_sites(1)
            assert fleet.datasets()["logs"].files == 1
            (folder / "b.csv").write_text("x\n2\n3\n")
            deadline = time.monotonic() + 20
            while fleet.datasets()["logs"].files != 2:
                assert time.monotonic() < deadline, "the rescan never reported the new file"
                time.sleep(0.1)
            assert fleet.datasets()["logs"].bytes == len("x\n1\n") + len("x\n2\n3\n")

            from jupyter_edge.local import site_worker_spec

            cluster.worker_spec["porto"] = site_worker_spec(SiteSpec("porto", {"region": "eu"}))
            cluster.scale(2)
            assert sorted(s.name for s in fleet.wait_for_sites(2)) == ["lisbon", "porto"]
            cluster.scale(1)
            deadline = time.monotonic() + 20
            while [s.state for s in fleet.sites() if s.name == "porto"] != ["offline"]:
                assert time.monotonic() < deadline, "a site that left is not listed offline"
                time.sleep(0.1)
            porto = fleet.catalog().sites["porto"]
            assert porto.offline_since and porto.offline_reason and porto.datasets == {}, porto
            assert fleet.catalog().sites["lisbon"].state == "running"
        cluster.close()


def test_large_and_unicode_output_arrives_whole_and_in_order(fleet):
    def chatty():
        for i in range(5000):
            print(f"line {i} ✓")
        return "done"

    res = fleet.run(chatty, sites=["tokyo", "paris"])
    expected = "".join(f"line {i} ✓\n" for i in range(5000))
    for site in ("tokyo", "paris"):
        stdout = "".join(o["text"] for o in res.outputs[site] if o["name"] == "stdout")
        assert stdout == expected, f"{site}: {len(stdout)} chars, expected {len(expected)}"
    quiet = fleet.run(lambda: 1, sites=["tokyo"])
    assert quiet.outputs["tokyo"] == [], "nothing of an earlier execution may leak into the next"


def test_placed_on_a_site_that_already_left_is_lost_at_once(fleet):
    # A notebook's cached catalog can trail a departure by a moment: the
    # execution must end `lost` quickly, never wait for the site forever.
    import copy
    import time

    from jupyter_edge.catalog import Site

    stale = copy.deepcopy(fleet.catalog())
    stale.sites["ghost"] = Site(name="ghost", address="tcp://127.0.0.1:9", labels={"region": "eu"})
    with fleet._lock:
        fleet._cached, fleet._cached_at = stale, time.monotonic()
    started = time.monotonic()
    res = fleet.run(lambda: 1, sites=["ghost", "berlin"], timeout=60)
    assert time.monotonic() - started < 10
    assert dict(res) == {"berlin": 1}
    assert res.executions["ghost"].state == State.LOST
    assert "site 'ghost' was lost" in res.executions["ghost"].error
    assert {ex.site: ex.state for ex in fleet.job(res.job).executions}["ghost"] == State.LOST


def test_every_client_sees_the_same_jobs(fleet):
    from distributed import Client

    from jupyter_edge import Fleet

    res = fleet.run(lambda: "shared", sites=["paris"])
    other = Fleet(Client(fleet.address, set_as_default=False))
    try:
        record = other.job(res.job)
        assert (record.state, [ex.site for ex in record.executions]) == ("done", ["paris"])
        assert res.job in [j.id for j in other.jobs(limit=5)]
    finally:
        other.close()


def test_small_results_ride_with_the_task_and_large_ones_are_gathered(fleet):
    res = fleet.run(
        lambda site: (site.name * 3) if site.name == "berlin" else b"x" * 300_000, sites=["berlin", "paris"]
    )
    assert res["berlin"] == "berlinberlinberlin"
    assert res["paris"] == b"x" * 300_000
    assert res.executions["paris"].bytes_returned > 300_000 > res.executions["berlin"].bytes_returned


def test_the_scheduler_lets_go_of_each_chunk_once_the_notebook_has_it(fleet):
    """A 40 MiB value crosses the scheduler in chunks (edge.transfer.chunk, 4 MiB):
    sampled all along, it never holds more than the window (edge.transfer.window)
    of them, and nothing once the value is in."""
    import threading

    import dask.config

    plugin = fleet.client.cluster.scheduler.plugins["jupyter-edge"]
    window = int(dask.config.get("edge.transfer.window"))
    held, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            held[0] = max([held[0], *(len(chunks) for chunks in list(plugin._relaying.values()))])
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with dask.config.set({"edge.result-limit": "64MiB"}):
            res = fleet.run(lambda: os.urandom(16) + b"v" * (40 * 2**20 - 16), sites=["paris"], timeout=60)
    finally:
        done.set()
        sampler.join()
    assert res.ok and len(res["paris"]) == 40 * 2**20, res.errors
    assert 0 < held[0] <= window, f"the scheduler held {held[0]} chunks at once (window {window})"
    assert plugin._relaying == {}, "the scheduler still holds chunks of a value that arrived"
