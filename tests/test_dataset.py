"""The dataset handle (confined to its shard), declarations and scans."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from jupyter_edge.site.dataset import Dataset, DatasetDeclaration, DatasetPathError, parse_dataset_option, scan


@pytest.fixture
def shard(tmp_path):
    root = tmp_path / "sensors"
    (root / "2026").mkdir(parents=True)
    pd.DataFrame({"v": [1, 2]}).to_parquet(root / "a.parquet")
    pd.DataFrame({"v": [3]}).to_parquet(root / "2026" / "b.parquet")
    (root / "2026" / "notes.csv").write_text("x,y\n1,2\n")
    (tmp_path / "secret.txt").write_text("outside the dataset")
    os.symlink(tmp_path / "secret.txt", root / "link-out")
    return Dataset("sensors", "berlin", str(root))


def test_files_and_readers(shard):
    # The symlink that points outside is not a file of the dataset.
    assert shard.files() == ["2026/b.parquet", "2026/notes.csv", "a.parquet"]
    assert shard.files("**/*.parquet") == ["2026/b.parquet", "a.parquet"]
    assert sorted(shard.read_parquet().v) == [1, 2, 3]
    assert shard.read_csv().to_dict("records") == [{"x": 1, "y": 2}]
    with shard.open("2026/notes.csv") as f:
        assert f.read().startswith(b"x,y")


@pytest.mark.parametrize(
    "path", ["../secret.txt", "2026/../../secret.txt", "..", "/etc/passwd", "file:///etc/passwd", "~/x", "link-out"]
)
def test_paths_outside_are_refused(shard, path):
    with pytest.raises(DatasetPathError, match="outside dataset 'sensors'"):
        shard.open(path)


def test_the_filesystem_is_confined_too(shard):
    with pytest.raises(DatasetPathError):
        shard.fs.open("../secret.txt")
    with pytest.raises(DatasetPathError):
        shard.fs.ls("/")
    assert shard.fs.cat("2026/notes.csv").startswith(b"x,y")


def test_absolute_path_inside_is_accepted(shard):
    inside = os.path.join(shard.path, "2026", "notes.csv")
    with shard.open(inside) as f:
        assert f.read(3) == b"x,y"


def test_read_only(shard):
    with pytest.raises(DatasetPathError, match="read-only"):
        shard.open("new.csv", "w")


def test_missing_files_are_a_clear_error(shard):
    with pytest.raises(FileNotFoundError, match=r"no CSV files matching '\*\*/\*\.tsv'"):
        shard.read_csv("**/*.tsv")


def test_declarations(tmp_path):
    decl = parse_dataset_option(f"sensors={tmp_path}", "berlin")
    assert decl == DatasetDeclaration("sensors", str(tmp_path), "berlin") and decl.kind == "local"
    replica = parse_dataset_option(f"weather={tmp_path}@eu", "paris")
    assert replica.shard == "eu"
    s3 = parse_dataset_option("logs=s3://edge-logs/berlin/", "berlin")
    assert (s3.url, s3.kind, s3.shard) == ("s3://edge-logs/berlin/", "s3", "berlin")
    with pytest.raises(ValueError, match="is not a folder"):
        parse_dataset_option(f"x={tmp_path}/missing", "berlin")
    for bad in ("sensors", "=/tmp", "sensors="):
        with pytest.raises(ValueError, match="expected NAME=PATH"):
            parse_dataset_option(bad, "berlin")


def test_scan_measures_bytes_and_files(shard):
    size, files = scan(DatasetDeclaration("sensors", shard.path, "berlin"))
    paths = [os.path.join(d, f) for d, _, fs in os.walk(shard.path) for f in fs]
    regular = [p for p in paths if not os.path.islink(p)]
    assert (size, files) == (sum(map(os.path.getsize, regular)), 3)
