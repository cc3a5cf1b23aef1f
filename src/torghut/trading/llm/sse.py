"""Incremental decoder for `text/event-stream` bodies (server-sent events).

Implements the WHATWG HTML "event stream interpretation" rules on raw bytes. It is hand-written
because no available library gets all of them right: httpx-sse dispatches events whose data
buffer is empty and loses the first event after a byte-order mark, and the openai SDK's decoder
raises on invalid UTF-8 instead of substituting U+FFFD. It also has to bound memory, which
neither does.

Pure: no I/O, no asyncio, stdlib only. Feed it the body bytes as they arrive, in any chunking;
the events produced do not depend on where the chunks were cut.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEEventTooLarge"]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

_BOM = b"\xef\xbb\xbf"
# A line may carry a field name and ": " on top of the event data it holds, so a single line is
# allowed a little more than the data limit before it counts as runaway.
_LINE_SLACK = 4096
# A `retry` value with more digits than this is ignored: no reconnection time needs it, and
# converting a million digits is quadratic work (a hostile peer's way to stall the loop).
MAX_RETRY_DIGITS = 10
# Named events without data remembered in `dropped_event_types` (the most recent ones).
MAX_DROPPED_EVENT_TYPES = 16


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event.

    `id` is the last event ID in force when the event was dispatched (None until an `id` field
    was seen); `retry` is the reconnection time in force, in milliseconds (None until a valid
    `retry` field was seen). Both are stream state, as in the spec, so they carry over to later
    events.
    """

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEEventTooLarge(ValueError):
    """An event's data (or one line of the stream) outgrew the decoder's limit.

    `events` holds the events completed before the offending one in the same `feed` call, so
    that nothing is lost when the caller handles the error.
    """

    def __init__(self, limit: int, events: Sequence[SSEEvent] = ()) -> None:
        super().__init__(f"server-sent event exceeds the limit of {limit} bytes")
        self.limit = limit
        self.events: list[SSEEvent] = list(events)


# The frozen dataclass __init__ sets each field through object.__setattr__, which is half the
# cost of decoding a typical event; the hot path writes the slots directly instead.
_new_event = object.__new__
_set_event = SSEEvent.__dict__["event"].__set__
_set_data = SSEEvent.__dict__["data"].__set__
_set_id = SSEEvent.__dict__["id"].__set__
_set_retry = SSEEvent.__dict__["retry"].__set__


class SSEDecoder:
    """Turns event-stream bytes into `SSEEvent`s.

    `feed(chunk)` returns the events completed by that chunk; `close()` ends the stream (an
    unfinished event is discarded, as the spec says). An event whose data grows past
    `max_event_bytes` (UTF-8 bytes, lines joined by LF) raises `SSEEventTooLarge`, as does a
    single line that grows past the limit plus a small slack before its line end arrives, so
    memory stays bounded. After an error or `close()` the decoder refuses further input.

    A named event that ends with no data is not dispatched (the spec); its type is kept in
    `dropped_event_types` (the last `MAX_DROPPED_EVENT_TYPES` only). With
    `report_empty_named=True` such an event is returned instead, with empty data, in its place
    among the others, so a consumer can tell what came before what (a bare `event: error`).
    A `retry` value of more than `MAX_RETRY_DIGITS` digits is ignored.
    """

    __slots__ = (
        "_closed",
        "_data",
        "_data_len",
        "_event_type",
        "_failed",
        "_head",
        "_last_id",
        "_line_limit",
        "_max_event_bytes",
        "_pending",
        "_pending_len",
        "_report_empty_named",
        "_retry",
        "_skip_lf",
        "dropped_event_types",
    )

    def __init__(
        self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, *, report_empty_named: bool = False
    ) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self._max_event_bytes = max_event_bytes
        self._line_limit = max_event_bytes + _LINE_SLACK
        # Bytes seen so far while they could still be the start of a BOM; None once decided.
        self._head: bytes | None = b""
        # The last byte fed was a CR: an LF right after it belongs to the same line end.
        self._skip_lf = False
        # Pieces of the unfinished line, kept apart so a long line costs linear time.
        self._pending: list[bytes] = []
        self._pending_len = 0
        # Data values as raw bytes; decoded once at dispatch (same result as per line, since
        # the LF that joins them ends any broken UTF-8 sequence).
        self._data: list[bytes] = []
        self._data_len = 0
        self._event_type = ""
        # Types of named events that ended with no data (and so were not dispatched).
        self.dropped_event_types: deque[str] = deque(maxlen=MAX_DROPPED_EVENT_TYPES)
        self._report_empty_named = report_empty_named
        self._last_id: str | None = None
        self._retry: int | None = None
        self._failed = False
        self._closed = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume the next bytes of the stream; return the events they complete."""
        if self._closed:
            raise ValueError("SSEDecoder.feed() called after close()")
        if self._failed:
            raise SSEEventTooLarge(self._max_event_bytes)
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if self._head is not None:
            # The BOM is only dropped at the very start, and may arrive split across chunks.
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # A CR ends its line now; only whether a following LF is part of that line end is
            # left to the next chunk.
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        pending = self._pending
        if not lines:
            # No line end: only the new piece is stored, never re-joined or re-scanned.
            pending.append(tail)
            self._pending_len += len(tail)
            if self._pending_len > self._line_limit:
                self._fail([])
            return []
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()
        if self._pending_len + len(chunk) > self._line_limit:
            # Only a big chunk (or a big pending line) can hold an over-long line.
            for index, line in enumerate(lines):
                if len(line) > self._line_limit:
                    self._fail(self._process(lines[:index]))
        events = self._process(lines)
        if tail:
            pending.append(tail)
            if len(tail) > self._line_limit:
                self._fail(events)
        self._pending_len = len(tail)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream. The spec discards an unfinished line and an undispatched event."""
        self._closed = True
        self._pending = []
        self._pending_len = 0
        self._data = []
        self._data_len = 0
        self._event_type = ""
        self._head = None
        self._skip_lf = False
        return []

    def _fail(self, events: list[SSEEvent]) -> NoReturn:
        self._failed = True
        self._pending = []
        self._data = []
        raise SSEEventTooLarge(self._max_event_bytes, events)

    def _process(self, lines: list[bytes]) -> list[SSEEvent]:
        """Interpret complete lines (without their line ends)."""
        events: list[SSEEvent] = []
        append = events.append
        # Locals instead of attributes in the loop; written back at the end.
        data = self._data
        data_len = self._data_len
        event_type = self._event_type
        last_id = self._last_id
        retry = self._retry
        limit = self._max_event_bytes + 1  # the buffer counts one LF per line, the last is cut
        for line in lines:
            # The common cases first: the blank line that dispatches, then `data: ...`.
            if not line:
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    event = _new_event(SSEEvent)
                    _set_event(event, event_type or "message")
                    _set_data(event, raw.decode("utf-8", "replace"))
                    _set_id(event, last_id)
                    _set_retry(event, retry)
                    append(event)
                    data = []
                    data_len = 0
                elif event_type:
                    # Not dispatched (the spec), but a consumer may still care that a named
                    # event arrived: Jangar's bare `event: error` is a failure.
                    self.dropped_event_types.append(event_type)
                    if self._report_empty_named:
                        event = _new_event(SSEEvent)
                        _set_event(event, event_type)
                        _set_data(event, "")
                        _set_id(event, last_id)
                        _set_retry(event, retry)
                        append(event)
                # Reset even when nothing was dispatched, as the spec says.
                event_type = ""
                continue
            if line.startswith(b"data: "):
                value = line[6:]
            else:
                colon = line.find(b":")
                if colon == 0:
                    continue  # comment
                if colon < 0:
                    name = line
                    value = b""
                else:
                    name = line[:colon]
                    value = line[colon + 1 :]
                    if value[:1] == b" ":
                        value = value[1:]
                if name == b"event":
                    event_type = value.decode("utf-8", "replace")
                    continue
                if name == b"id":
                    if b"\x00" not in value:
                        last_id = value.decode("utf-8", "replace")
                    continue
                if name == b"retry":
                    # bytes.isdigit() is ASCII digits only; the length is checked first.
                    if len(value) <= MAX_RETRY_DIGITS and value.isdigit():
                        retry = int(value)
                    continue
                if name != b"data":
                    continue  # unknown fields are ignored
            data.append(value)
            data_len += len(value) + 1
            if data_len > limit:
                self._fail(events)
        self._data = data
        self._data_len = data_len
        self._event_type = event_type
        self._last_id = last_id
        self._retry = retry
        return events
