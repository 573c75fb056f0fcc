"""``IdentityMemo``: values derived from immutable objects, found again by the objects' identity.

Performance (bench/cache.py): on a response-cache hit the same frozen objects come back
request after request (the call's kept cache decision, the decoded cache entry), and what
the hit path derives from them (the answer's ``Served`` and bill, the prebuilt wire
response) is a pure function of them. Hashing the objects' contents would
cost about what deriving does, so the memo is keyed by their ``id``\\ s instead. That is only
sound while the objects are alive (a freed object's id can be reused), so every entry holds
its key objects: an id in the memo always names the object it was computed from. Callers pass
only frozen objects. Bounded: the oldest entry goes first.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """At most ``max_entries`` values, each keyed by the identities of a tuple of objects."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: dict[tuple[int, ...], tuple[tuple[object, ...], V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, objects: tuple[object, ...]) -> V | None:
        """The value put for these very objects (same identities, same order), or None."""
        found = self._entries.get(tuple(map(id, objects)))
        return None if found is None else found[1]

    def put(self, objects: tuple[object, ...], value: V) -> V:
        """Keep ``value`` for ``objects`` (held until the entry is dropped); returns it."""
        if len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[tuple(map(id, objects))] = (objects, value)
        return value


__all__ = ["IdentityMemo"]
