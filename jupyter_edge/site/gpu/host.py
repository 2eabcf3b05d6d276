"""The machine a site describes: ``/``, or a host mounted elsewhere (``--host-root``).

A site in a container sees its host's ``/sys``, ``/proc`` and ``/etc`` only where
they are mounted (as node_exporter's ``--path.rootfs``); tests point it at fake
trees. Every read of the host goes through here, and a file that is there but
not in the format its source documents is a :class:`Malformed`, named, never a
crash and never a guess.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HostRoot", "Malformed"]


class Malformed(ValueError):
    """A host file that is not in its documented format; the message names it."""


class HostRoot:
    def __init__(self, root: str | os.PathLike = "/"):
        self.root = Path(root)

    def path(self, absolute: str) -> Path:
        """``absolute`` (a path on the host) as seen from here."""
        return self.root / absolute.lstrip("/")

    def text(self, path: str | Path) -> str | None:
        """The file's text, stripped (and cut at a NUL, as device-tree strings end); ``None`` if absent."""
        path = path if isinstance(path, Path) else self.path(path)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:  # unreadable (permissions, a device gone): say which
            raise Malformed(f"{path}: {e.strerror or e}") from None
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()

    def integer(self, path: str | Path, base: int = 10) -> int | None:
        """The file's integer; ``None`` if absent, :class:`Malformed` if it holds something else."""
        text = self.text(path)
        if text is None:
            return None
        try:
            return int(text, base)
        except ValueError:
            raise Malformed(f"{path}: expected a whole number, found {text[:40]!r}") from None

    def keyed(self, path: str | Path, separator: str = "=") -> dict[str, str] | None:
        """``KEY=VALUE`` lines (a uevent file, os-release) as a dict; ``None`` if absent."""
        text = self.text(path)
        if text is None:
            return None
        pairs = {}
        for line in text.splitlines():
            key, sep, value = line.partition(separator)
            if sep:
                pairs[key.strip()] = value.strip().strip('"')
        return pairs

    def memory_total(self) -> int | None:
        """The host's memory in bytes (``MemTotal`` of ``/proc/meminfo``, in kB there)."""
        fields = self.keyed("/proc/meminfo", ":")
        if fields is None or "MemTotal" not in fields:
            return None
        number, _, unit = fields["MemTotal"].partition(" ")
        if not number.isdigit() or unit not in ("kB", ""):
            raise Malformed(f"{self.path('/proc/meminfo')}: MemTotal is {fields['MemTotal']!r}, not 'N kB'")
        return int(number) * (1024 if unit == "kB" else 1)
