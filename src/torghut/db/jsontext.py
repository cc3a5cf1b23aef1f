"""JSON text already serialized by a JSON column's bind step (`tables.SafeJSON`), so that the
engine's serializer (`engine.json_dumps`, which the drivers call) passes it through instead of
walking and encoding the value a second time. Its own module: both `tables` and `engine` need
it, and neither should import the other."""

from __future__ import annotations


class JSONText(str):
    """The JSON document itself (not a string to be encoded as JSON)."""

    __slots__ = ()
