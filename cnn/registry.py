"""Name -> constructor registries with errors that list the valid names."""

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that is not in a registry; the message lists the valid names."""


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]`` or raise :class:`UnknownNameError` naming the choices.

    Example:
        >>> lookup({"relu": 1}, "relu", "activation")
        1
    """
    try:
        return registry[name]
    except KeyError:
        choices = ", ".join(registry)
        raise UnknownNameError(f"unknown {kind} {name!r}; choose one of: {choices}") from None
