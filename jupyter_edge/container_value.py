"""A value that came back from a container execution as its text and HTML forms.

Container runners send JSON, never pickles: a value that is not JSON travels
as the forms it displays in (``text/plain``, ``text/html``), and the notebook
shows it as it would have shown the object itself.
"""

from __future__ import annotations


class ContainerValue:
    """What a container cell's last expression displays as."""

    def __init__(self, bundle: dict[str, str]):
        self.bundle = dict(bundle)

    @property
    def text(self) -> str:
        return self.bundle.get("text/plain", "")

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str | None:
        return self.bundle.get("text/html")

    def __eq__(self, other) -> bool:
        return isinstance(other, ContainerValue) and other.bundle == self.bundle

    __hash__ = None
