"""Whole-column forms of bind processors, for `engine.executemany`.

`executemany` binds a batch column by column. A bind processor that has a column form here is
given the whole column at once: the NUL guard of text columns (`tables`) can check a column of
ASCII text with two C-level calls instead of one Python call per value. Its own module: both
`tables` (which registers) and `engine` (which looks up) need it, and neither should import the
other."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Process = Callable[[Any], Any]
ColumnProcess = Callable[[Sequence[Any]], Iterable[Any]]

_WHOLE: dict[Process, ColumnProcess] = {}


def has_column_form(process: Process, whole: ColumnProcess) -> None:
    """Declare that `whole(column)` gives, value for value, `map(process, column)`."""
    _WHOLE[process] = whole


def column_form(process: Process) -> ColumnProcess:
    """`process` applied to a whole column: its declared form, else a `map`."""
    try:
        whole = _WHOLE.get(process)
    except TypeError:  # not hashable: none declared
        whole = None
    return functools.partial(map, process) if whole is None else whole
