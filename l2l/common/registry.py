"""One name registry, shared by every kind of entry (optimizers, task families, learned optimizers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind looked up by name, with errors that list what is registered.

    Args:
        kind: what an entry is, for messages (e.g. ``"optimizer"``).
        plural: the plural used when listing the registered names (e.g. ``"optimizers"``).
    """

    def __init__(self, kind: str, plural: str):
        self.kind, self.plural = kind, plural
        self.entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name can be registered once."""
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self.entries[name]!r})")
        self.entries[name] = entry
        return entry

    def decorator(self, name: str, on_register: Callable[[T], None] | None = None) -> Callable[[T], T]:
        """A class decorator registering its class under ``name`` (``on_register`` runs first)."""

        def deco(entry: T) -> T:
            if on_register is not None:
                on_register(entry)
            return self.register(name, entry)

        return deco

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> T:
        """The entry registered as ``name``; a KeyError lists the registered names."""
        if name not in self.entries:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered {self.plural}: {', '.join(self.names())}"
            )
        return self.entries[name]
