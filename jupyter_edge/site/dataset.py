"""Datasets at a site: how they are declared, measured, and handed to user code.

The :class:`Dataset` handle lives in the runner process and is confined to its
root: relative paths that climb out with ``..`` and absolute paths elsewhere are
refused. That guards against mistakes, not malice; isolation from hostile code
is the job of the site's policy and container executions.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

import fsspec
from fsspec.implementations.dirfs import DirFileSystem

__all__ = ["Dataset", "DatasetDeclaration", "DatasetPathError", "parse_dataset_option", "scan"]

_SHARD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class DatasetPathError(PermissionError):
    """A path that leads outside the dataset it was asked of."""


@dataclass(frozen=True)
class DatasetDeclaration:
    """``--dataset NAME=PATH[@SHARD]``: this site's shard of dataset NAME."""

    name: str
    url: str
    shard: str

    @property
    def protocol(self) -> str:
        protocol, _ = fsspec.core.split_protocol(self.url)
        return protocol or "file"

    @property
    def kind(self) -> str:
        return "local" if self.protocol in ("file", "local") else self.protocol


def parse_dataset_option(text: str, site: str) -> DatasetDeclaration:
    """Parse ``NAME=PATH[@SHARD]``; the shard defaults to the site's name, so a
    plain declaration is the site's own shard and ``@SHARD`` makes replicas."""
    name, sep, location = text.partition("=")
    name, location = name.strip(), location.strip()
    if not sep or not _SHARD.match(name) or not location:
        raise ValueError(f"bad --dataset {text!r}: expected NAME=PATH or NAME=PATH@SHARD")
    shard = site
    head, at, tail = location.rpartition("@")
    if at and _SHARD.match(tail) and "/" not in tail:
        location, shard = head, tail
    protocol, _ = fsspec.core.split_protocol(location)
    if protocol in (None, "file", "local"):
        location = os.path.abspath(os.path.expanduser(fsspec.core.strip_protocol(location)))
        if not os.path.isdir(location):
            raise ValueError(f"--dataset {name}: {location} is not a folder on this site")
    return DatasetDeclaration(name, location, shard)


def filesystem(url: str, storage_options: dict | None = None):
    """The fsspec filesystem and root path for ``url``, with the site's own
    options for its protocol (``edge.storage-options.<protocol>``)."""
    protocol, _ = fsspec.core.split_protocol(url)
    options = dict((storage_options or {}).get(protocol or "file", {}))
    return fsspec.core.url_to_fs(url, **options)


def scan(declaration: DatasetDeclaration, storage_options: dict | None = None) -> tuple[int, int]:
    """Measure a shard: (total bytes, file count). Blocking; run it off the loop."""
    fs, root = filesystem(declaration.url, storage_options)
    fs.invalidate_cache()
    found = fs.find(root, detail=True)
    sizes = [info.get("size") or 0 for info in found.values() if info.get("type", "file") == "file"]
    return int(sum(sizes)), len(sizes)


class _ConfinedFileSystem(DirFileSystem):
    """A :class:`DirFileSystem` whose every path is checked by its dataset."""

    def __init__(self, dataset: Dataset, **kwargs):
        super().__init__(**kwargs)
        self._dataset = dataset

    def _join(self, path):
        if isinstance(path, str):
            return super()._join(self._dataset.relative(path))
        return super()._join(path)


class Dataset:
    """This site's shard of a dataset, as user code sees it.

    ``dataset.files("*.parquet")``, ``dataset.open("a/b.csv")``,
    ``dataset.read_parquet()``, ``dataset.fs`` (fsspec, rooted at the shard).
    """

    def __init__(self, name: str, shard: str, url: str, storage_options: dict | None = None):
        self.name = name
        self.shard = shard
        self.url = url
        self._storage_options = storage_options or {}
        self._fs = None

    @property
    def path(self) -> str:
        """The shard's location at this site: a folder, or a URL such as ``s3://...``."""
        return self.url

    @property
    def kind(self) -> str:
        return DatasetDeclaration(self.name, self.url, self.shard).kind

    @property
    def fs(self) -> DirFileSystem:
        if self._fs is None:
            base, root = filesystem(self.url, self._storage_options)
            self._root = root.rstrip("/")
            self._fs = _ConfinedFileSystem(self, path=root, fs=base)
        return self._fs

    def relative(self, path: str) -> str:
        """``path`` as a path inside the shard, or :class:`DatasetPathError`."""
        if not isinstance(path, str):
            raise TypeError(f"a dataset path is a string, not {type(path).__name__}")
        self.fs  # noqa: B018 - resolves the root
        original = path
        if "://" in path or path.startswith(("/", "~")):
            bare = fsspec.core.strip_protocol(path).rstrip("/")
            if bare == self._root or bare.startswith(self._root + "/"):
                path = bare[len(self._root) :]
            else:
                raise self._outside(original)
        norm = posixpath.normpath(path.lstrip("/")) if path.strip("/") else ""
        if norm == ".":
            norm = ""
        if norm == ".." or norm.startswith("../"):
            raise self._outside(original)
        if self.kind == "local" and norm:
            real = os.path.realpath(os.path.join(self._root, norm))
            if not (real == os.path.realpath(self._root) or real.startswith(os.path.realpath(self._root) + os.sep)):
                raise self._outside(original)
        return norm

    def _outside(self, path: str) -> DatasetPathError:
        return DatasetPathError(
            f"{path!r} is outside dataset {self.name!r} (shard {self.shard!r} at {self.url}); "
            "use paths relative to the dataset"
        )

    def files(self, pattern: str = "**") -> list[str]:
        """Files in the shard matching a glob ``pattern``, relative and sorted."""
        self.relative(pattern)
        found = self.fs.glob(pattern, detail=True) if pattern not in ("**", "") else self.fs.find("", detail=True)
        return sorted(p.lstrip("/") for p, info in found.items() if info.get("type") == "file")

    def open(self, path: str, mode: str = "rb", **kwargs):
        """Open one file of the shard; read-only modes only."""
        if any(c in mode for c in "wax+"):
            raise DatasetPathError(f"dataset {self.name!r} is read-only here (mode {mode!r})")
        return self.fs.open(self.relative(path), mode, **kwargs)

    def read_parquet(self, pattern: str = "**/*.parquet", **kwargs):
        """All Parquet files matching ``pattern``, as one pandas DataFrame."""
        import pandas as pd

        return self._concat(pd.read_parquet, pattern, "Parquet", **kwargs)

    def read_csv(self, pattern: str = "**/*.csv", **kwargs):
        """All CSV files matching ``pattern``, as one pandas DataFrame."""
        import pandas as pd

        return self._concat(pd.read_csv, pattern, "CSV", **kwargs)

    def _concat(self, reader, pattern: str, what: str, **kwargs):
        import pandas as pd

        paths = self.files(pattern) or ([pattern] if not any(c in pattern for c in "*?[") else [])
        if not paths:
            raise FileNotFoundError(f"no {what} files matching {pattern!r} in dataset {self.name!r} ({self.url})")
        frames = []
        for path in paths:
            with self.open(path) as f:
                frames.append(reader(f, **kwargs))
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r} shard={self.shard!r} at {self.url}>"
