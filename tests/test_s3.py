"""A dataset on an S3 prefix (moto's server on 127.0.0.1), read at the site
through s3fs; the site's credentials never reach the notebook's process."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e

SITE_KEY, SITE_SECRET = "site-key-berlin", "site-secret-never-leaves-berlin"


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_dataset_read_at_the_site(cli_fleet, s3_endpoint):
    import s3fs

    # The test uploads with its own throwaway identity; the site has its own.
    uploader = s3fs.S3FileSystem(key="uploader", secret="uploader", endpoint_url=s3_endpoint)
    uploader.mkdir("edge-logs")
    for day in (1, 2):
        with uploader.open(f"edge-logs/berlin/day{day}.csv", "w") as f:
            pd.DataFrame({"level": ["INFO", "ERROR", "ERROR"][: day + 1]}).to_csv(f, index=False)

    fleet_procs = cli_fleet()
    fleet_procs.add_site(
        "berlin",
        "--label",
        "region=eu",
        "--dataset",
        "logs=s3://edge-logs/berlin/",
        env={
            "AWS_ACCESS_KEY_ID": SITE_KEY,
            "AWS_SECRET_ACCESS_KEY": SITE_SECRET,
            "DASK_EDGE__STORAGE_OPTIONS": repr({"s3": {"endpoint_url": s3_endpoint}}),
        },
    )
    fleet = fleet_procs.connect(1)
    with fleet:
        info = fleet.datasets()["logs"]
        assert (info.kind, info.files) == ("s3", 2)
        assert info.bytes == sum(uploader.du("edge-logs/berlin/", total=False).values())

        def errors(dataset):
            import os

            frame = dataset.read_csv()
            return int((frame.level == "ERROR").sum()), dataset.files(), "AWS_SECRET_ACCESS_KEY" in os.environ

        res = fleet.run(errors, data="logs", timeout=60)
        assert res.ok, res.errors
        assert res["berlin"] == (3, ["day1.csv", "day2.csv"], True)  # 1 + 2 ERROR rows

        seen_by_notebook = (
            json.dumps(fleet.catalog().to_dict())
            + json.dumps([j.to_dict(outputs=True) for j in fleet.jobs()])
            + repr(dict(res))
        )
        assert SITE_SECRET not in seen_by_notebook and SITE_KEY not in seen_by_notebook
        assert s3_endpoint not in seen_by_notebook, "storage options stay at the site"
        assert SITE_SECRET not in os.environ.values()
