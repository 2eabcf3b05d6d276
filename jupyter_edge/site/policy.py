"""A site's own policy, enforced at the site: the scheduler and the notebook
cannot override it. Read from the YAML file given with ``--policy FILE``::

    datasets:              # who may use which dataset: owners, or "*" for anyone
      sensors: [ana, bob]
      "*": ["*"]           # every other dataset (default: anyone)
    cells: false           # arbitrary cells and functions (default: true)
    images: [edge-python:3.11]   # container images allowed ("*": any; default: any)
    wasm: [sha256:9f86d0...]     # WebAssembly modules allowed, by SHA-256 (true: any, the
                                 # default; false: none)
    result-limit: 4MiB     # the largest value an execution may return
    output-images: false   # whether displayed images may leave the site (default: true)

Owners are certificate common names over TLS (else who the notebook says it
is). A refused execution fails with the rule that refused it, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dask.utils import parse_bytes

ANYONE = "*"
_KEYS = {"datasets", "cells", "images", "wasm", "result-limit", "output-images"}


class PolicyError(ValueError):
    """A policy file that cannot be read as one."""


class Refused(Exception):
    """An execution the policy does not allow; ``rule`` names the rule."""

    def __init__(self, rule: str, why: str):
        super().__init__(f"refused by the site's policy, rule {rule}: {why}")
        self.rule = rule


@dataclass(frozen=True)
class Policy:
    datasets: dict[str, tuple[str, ...]] = field(default_factory=lambda: {ANYONE: (ANYONE,)})
    cells: bool = True
    images: tuple[str, ...] = (ANYONE,)
    wasm: tuple[str, ...] = (ANYONE,)  # module hashes ("sha256:<hex>"), or "*"; () for none
    result_limit: int | None = None
    output_images: bool = True

    @classmethod
    def from_dict(cls, data: dict | None) -> Policy:
        data = data or {}
        if not isinstance(data, dict):
            raise PolicyError("a policy is a mapping of rules")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise PolicyError(f"unknown policy rule(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
        datasets = data.get("datasets", {ANYONE: [ANYONE]})
        if not isinstance(datasets, dict):
            raise PolicyError("datasets: a mapping of dataset name (or '*') to a list of owners (or '*')")
        rules = {}
        for name, owners in datasets.items():
            owners = [owners] if isinstance(owners, str) else owners
            if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
                raise PolicyError(f"datasets.{name}: a list of owners (or '*'), not {owners!r}")
            rules[str(name)] = tuple(owners)
        rules.setdefault(ANYONE, (ANYONE,))
        images = data.get("images", [ANYONE])
        images = [images] if isinstance(images, str) else images
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise PolicyError(f"images: a list of image names (or '*'), not {images!r}")
        wasm = data.get("wasm", True)
        if wasm is True or wasm is False:
            wasm = [ANYONE] if wasm else []
        if not isinstance(wasm, list) or not all(isinstance(h, str) and _is_module_hash(h) for h in wasm):
            raise PolicyError(f"wasm: true, false, or a list of module hashes such as 'sha256:9f86...', not {wasm!r}")
        for key in ("cells", "output-images"):
            if not isinstance(data.get(key, True), bool):
                raise PolicyError(f"{key}: true or false, not {data[key]!r}")
        limit = data.get("result-limit")
        try:
            limit = None if limit is None else (parse_bytes(limit) if isinstance(limit, str) else int(limit))
        except (TypeError, ValueError):
            raise PolicyError(f"result-limit: a size such as 4MiB, not {limit!r}") from None
        return cls(
            datasets=rules,
            cells=data.get("cells", True),
            images=tuple(images),
            wasm=tuple(h.lower() for h in wasm),
            result_limit=limit,
            output_images=data.get("output-images", True),
        )

    @classmethod
    def load(cls, path: str) -> Policy:
        import yaml

        try:
            with open(path) as f:
                return cls.from_dict(yaml.safe_load(f))
        except (OSError, yaml.YAMLError) as e:
            raise PolicyError(f"cannot read the policy {path}: {e}") from None

    @property
    def restricts_owners(self) -> bool:
        return any(ANYONE not in owners for owners in self.datasets.values())

    def check(
        self, owner: str, dataset: str | None, kind: str, image: str | None = None, module: str | None = None
    ) -> None:
        """Raise :class:`Refused` unless ``owner`` may run this ``kind`` of work
        (``cell``, ``function``, ...) on ``dataset``; ``image`` for a container,
        ``module`` (its SHA-256) for a WebAssembly module."""
        if dataset is not None:
            rule = dataset if dataset in self.datasets else ANYONE
            owners = self.datasets[rule]
            if ANYONE not in owners and owner not in owners:
                raise Refused(
                    f"datasets.{rule}",
                    f"dataset {dataset!r} is for {', '.join(owners) or 'no one'}; this job's owner is {owner!r}",
                )
        if module is not None:
            if ANYONE in self.wasm or f"sha256:{module}" in self.wasm:
                return
            if not self.wasm:
                raise Refused("wasm", "this site runs no WebAssembly modules")
            raise Refused("wasm", f"module sha256:{module} is not among the {len(self.wasm)} this site accepts")
        if image is None and not self.cells:
            allowed = ", ".join(self.images) if ANYONE not in self.images else "any image"
            raise Refused("cells", f"this site runs no arbitrary {kind}s, only container images ({allowed})")
        if image is not None and ANYONE not in self.images and image not in self.images:
            raise Refused("images", f"image {image!r} is not allowed here; allowed: {', '.join(self.images) or 'none'}")

    def result_limit_for(self, configured: int) -> int:
        return configured if self.result_limit is None else min(configured, self.result_limit)


def _is_module_hash(text: str) -> bool:
    kind, _, digest = text.partition(":")
    return text == ANYONE or (
        kind == "sha256" and len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest)
    )
