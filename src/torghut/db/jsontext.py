"""JSON text already serialized by a JSON column's bind step (`tables.SafeJSON`), so that the
engine's serializer (`engine.json_dumps`, which the drivers call) passes it through instead of
walking and encoding the value a second time. Its own module: both `tables` and `engine` need
it, and neither should import the other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[[Any], str])

# The serializers known to pass `JSONText` through. A column bound on an engine with any other
# serializer (SQLAlchemy's default `json.dumps`, say) never gets one: that serializer would
# write it as a JSON string.
_PASSING: set[Callable[[Any], str]] = set()


class JSONText(str):
    """The JSON document itself (not a string to be encoded as JSON)."""

    __slots__ = ()


def passes_json_text(serializer: F) -> F:
    """Declare that `serializer` returns a `JSONText` as it is."""
    _PASSING.add(serializer)
    return serializer


def serializer_passes(serializer: object) -> bool:
    try:
        return serializer in _PASSING
    except TypeError:  # not hashable: not one of ours
        return False
