"""Label selectors as in Kubernetes: ``region=eu,tier in (factory,store),!draining``,
and numeric comparisons: ``edge.gpu.memory>=8GiB``, ``edge.gpu.count>1``.

Pure parsing and matching. A comma separates requirements, all of which must
hold; commas inside parentheses separate the values of a set. A label a site
sets itself (``edge.*``) may hold several values, comma-separated
(``edge.gpu.vendor=amd,intel``): a requirement holds when one of them matches
(``!=`` and ``notin``: when none does). A comparison's value may carry a unit
of bytes (``8GiB``, ``500MB``, as Dask's ``parse_bytes`` reads them); a site
whose label is missing or not a number fails it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from .protocol import RESERVED_PREFIX

__all__ = ["Requirement", "Selector", "SelectorError", "parse_label"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_TOKEN = re.compile(rf"\s*(?:(?P<op>!=|==|>=|<=|=|>|<|!|\(|\)|,)|(?P<word>{_NAME}))")
_COMPARISONS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
_LABEL = re.compile(rf"^{_NAME}$")


class SelectorError(ValueError):
    """A selector or label that cannot be parsed; the message says where."""


@dataclass(frozen=True)
class Requirement:
    """One condition on a site's labels."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists", ">", ">=", "<", "<="
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        value = labels.get(self.key)
        values = [] if value is None else value.split(",") if self.key.startswith(RESERVED_PREFIX) else [value]
        if self.op in _COMPARISONS:
            wanted = self._operand
            return any(n is not None and _COMPARISONS[self.op](n, wanted) for n in map(number, values))
        if self.op in ("=", "in"):
            return any(v in self.values for v in values)
        # "!=" and "notin" hold for sites without the key, as in Kubernetes.
        return not any(v in self.values for v in values)

    @cached_property
    def _operand(self) -> float | None:
        """A comparison's number, read once (placement matches it against every site)."""
        return number(self.values[0])

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("=", "!=", *_COMPARISONS):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    """All of its requirements must hold; the empty selector matches every site."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | Selector | None) -> Selector:
        """Parse ``text``; a :class:`Selector` passes through, ``None`` is empty.

        >>> Selector.parse("region=eu, tier in (factory,store)").matches(
        ...     {"region": "eu", "tier": "store"})
        True
        """
        if isinstance(text, Selector):
            return text
        if text is None:
            return cls()
        if not isinstance(text, str):
            raise SelectorError(f"a selector is a string like 'region=eu', not {type(text).__name__}")
        return cls(tuple(_Parser(text).requirements()))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def unmet(self, labels: Mapping[str, str]) -> list[Requirement]:
        """The requirements ``labels`` fail, to explain a rejection."""
        return [r for r in self.requirements if not r.matches(labels)]

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(r.key for r in self.requirements))

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0

    def _tokenize(self, text: str) -> list[tuple[str, str, int]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                start = len(text) - len(text[pos:].lstrip())
                raise self.error(f"unexpected {text[start]!r}", start)
            kind = "op" if m.group("op") else "word"
            start = m.start(kind)
            tokens.append((kind, m.group(kind), start))
            pos = m.end()
        return tokens

    def error(self, what: str, pos: int | None = None) -> SelectorError:
        if pos is None:
            pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        return SelectorError(
            f"bad selector {self.text!r}: {what} at position {pos}; "
            "expected e.g. 'region=eu', 'tier!=store', 'zone in (a,b)', 'gpu', '!draining', "
            "'edge.gpu.memory>=8GiB'"
        )

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            # Name what was wanted: "unexpected end" alone does not tell 'region=' lacks a value.
            raise self.error(f"expected {what}, found the end")
        self.i += 1
        return token

    def word(self, what: str) -> str:
        kind, value, _ = self.take(what)
        if kind != "word":
            self.i -= 1
            raise self.error(f"expected {what}, found {value!r}")
        return value

    def requirements(self) -> list[Requirement]:
        if not self.tokens:
            raise self.error("empty selector")
        found = [self.requirement()]
        while self.peek() is not None:
            kind, value, _ = self.take("','")
            if (kind, value) != ("op", ","):
                self.i -= 1
                raise self.error(f"expected ',' between requirements, found {value!r}")
            found.append(self.requirement())
        return found

    def requirement(self) -> Requirement:
        kind, value, _ = self.take("a label key")
        if (kind, value) == ("op", "!"):
            return Requirement(self.word("a label key after '!'"), "!exists")
        if kind != "word":
            self.i -= 1
            raise self.error(f"expected a label key, found {value!r}")
        key = value
        nxt = self.peek()
        if nxt is None or nxt[:2] == ("op", ","):
            return Requirement(key, "exists")
        kind, value, _ = self.take("an operator")
        if kind == "op" and value in ("=", "==", "!="):
            op = "!=" if value == "!=" else "="
            return Requirement(key, op, (self.word(f"a value after {value!r}"),))
        if kind == "op" and value in _COMPARISONS:
            operand = self.word(f"a number after {value!r}")
            if number(operand) is None:
                self.i -= 1
                raise self.error(f"expected a number (or bytes, like 8GiB) after {value!r}, found {operand!r}")
            return Requirement(key, value, (operand,))
        if kind == "word" and value in ("in", "notin"):
            return Requirement(key, value, self.value_set())
        self.i -= 1
        raise self.error(f"expected '=', '!=', '>', '>=', '<', '<=', 'in' or 'notin' after {key!r}, found {value!r}")

    def value_set(self) -> tuple[str, ...]:
        if self.take("'(' to open a set of values")[:2] != ("op", "("):
            self.i -= 1
            raise self.error("expected '(' to open a set of values")
        values = [self.word("a value")]
        while True:
            kind, value, _ = self.take("',' or ')' to close a set of values")
            if (kind, value) == ("op", ")"):
                return tuple(values)
            if (kind, value) != ("op", ","):
                self.i -= 1
                raise self.error(f"expected ',' or ')' in a set of values, found {value!r}")
            values.append(self.word("a value"))


def number(text: str) -> float | None:
    """``text`` as a number: plain (``2``, ``1.5``) or bytes with a unit (``8GiB`` ->
    8589934592.0); ``None`` if it is neither."""
    try:
        return float(text)
    except ValueError:
        pass
    from dask.utils import parse_bytes

    try:
        return float(parse_bytes(text))
    except (ValueError, TypeError, KeyError):
        return None


def parse_label(text: str) -> tuple[str, str]:
    """``"region=eu"`` -> ``("region", "eu")``, as given to ``--label``."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not _LABEL.match(key) or not _LABEL.match(value):
        raise SelectorError(f"bad label {text!r}: expected KEY=VALUE, e.g. region=eu")
    return key, value
