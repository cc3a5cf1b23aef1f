"""The SSE decoder, rule by rule (WHATWG "event stream interpretation"), each rule checked under
several chunkings; property tests that chunking never changes the result and that the decoder
agrees with a plain transcription of the spec; and the real Jangar example streams."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torghut.trading.llm.sse import (
    MAX_DROPPED_EVENT_TYPES,
    MAX_RETRY_DIGITS,
    SSEDecoder,
    SSEEvent,
    SSEEventTooLarge,
)

BOM = b"\xef\xbb\xbf"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "jangar"

Chunker = Callable[[bytes], list[bytes]]


def whole(stream: bytes) -> list[bytes]:
    return [stream]


def byte_by_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def random_splits(seed: int) -> Chunker:
    def chunker(stream: bytes) -> list[bytes]:
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, 7))) if stream else []
        bounds = [0, *cuts, len(stream)]
        return [stream[a:b] for a, b in itertools.pairwise(bounds)]

    return chunker


CHUNKERS: dict[str, Chunker] = {
    "whole": whole,
    "byte-by-byte": byte_by_byte,
    **{f"random-{seed}": random_splits(seed) for seed in range(3)},
}


@pytest.fixture(params=list(CHUNKERS), ids=list(CHUNKERS))
def chunker(request: pytest.FixtureRequest) -> Chunker:
    return CHUNKERS[request.param]


def decode_chunks(chunks: list[bytes], **kwargs: int) -> list[SSEEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def decode(stream: bytes, chunker: Chunker = whole, **kwargs: int) -> list[SSEEvent]:
    return decode_chunks(chunker(stream), **kwargs)


def datas(events: list[SSEEvent]) -> list[str]:
    return [event.data for event in events]


# --- line ends -----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_lines_end_in_lf_crlf_or_lone_cr(chunker: Chunker, eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert datas(decode(stream, chunker)) == ["a\nb", "c"]


def test_mixed_line_ends_in_one_stream(chunker: Chunker) -> None:
    stream = b"data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r"
    assert datas(decode(stream, chunker)) == ["a\nb\nc", "d"]


def test_cr_at_chunk_end_and_lf_at_next_chunk_start_are_one_line_end() -> None:
    # Counted as two line ends, the LF would be a blank line and dispatch "a" alone.
    assert datas(decode_chunks([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])) == ["a\nb"]


def test_cr_at_chunk_end_followed_by_cr_is_two_line_ends() -> None:
    assert datas(decode_chunks([b"data: a\r", b"\rdata: b\r", b"\r"])) == ["a", "b"]


def test_cr_at_chunk_end_then_close_ends_the_line_only() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\rdata: b\r") == [SSEEvent("message", "a")]
    assert decoder.close() == []


def test_unicode_line_separators_are_not_line_ends(chunker: Chunker) -> None:
    value = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg"
    stream = f"data: {value}\n\n".encode()
    assert datas(decode(stream, chunker)) == [value]


# --- byte-order mark -----------------------------------------------------------------------


def test_leading_bom_is_dropped(chunker: Chunker) -> None:
    assert datas(decode(BOM + b"data: first\n\n", chunker)) == ["first"]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_leading_bom_split_across_chunks_is_dropped(cut: int) -> None:
    stream = BOM + b"data: first\n\n"
    assert datas(decode_chunks([stream[:cut], stream[cut:]])) == ["first"]
    assert datas(decode_chunks([BOM[:1], BOM[1:2], BOM[2:], b"data: first\n\n"])) == ["first"]


def test_bom_is_dropped_only_at_the_very_start(chunker: Chunker) -> None:
    # A second BOM is part of the field name ("\ufeffdata"), an unknown field.
    assert decode(BOM + BOM + b"data: x\n\n", chunker) == []
    stream = b"data: a\n\n" + BOM + b"data: b\n\ndata: \xef\xbb\xbfc\n\n"
    assert datas(decode(stream, chunker)) == ["a", "\ufeffc"]


def test_partial_bom_at_start_is_not_a_bom(chunker: Chunker) -> None:
    # b"\xef\xbb" is invalid UTF-8 that becomes part of the field name.
    assert decode(b"\xef\xbbdata: x\n\n", chunker) == []
    assert decode(b"\xef", chunker) == []


# --- fields --------------------------------------------------------------------------------


def test_lines_starting_with_colon_are_comments(chunker: Chunker) -> None:
    stream = b": keepalive\ndata: a\n:data: no\n: \ndata: b\n\n:\n\n"
    assert datas(decode(stream, chunker)) == ["a\nb"]


def test_field_name_and_value_split_at_first_colon(chunker: Chunker) -> None:
    stream = b"event:x:y\ndata: a:b: c\n\n"
    assert decode(stream, chunker) == [SSEEvent("x:y", "a:b: c")]


def test_one_single_leading_space_of_the_value_is_dropped(chunker: Chunker) -> None:
    stream = b"data:nospace\n\ndata: one\n\ndata:  two\n\ndata:\ttab\n\ndata: \n\n"
    assert datas(decode(stream, chunker)) == ["nospace", "one", " two", "\ttab", ""]


def test_line_without_colon_is_a_field_name_with_empty_value(chunker: Chunker) -> None:
    stream = b"data\n\ndata\ndata\n\nevent\ndata: x\n\nid\ndata: y\n\n"
    assert decode(stream, chunker) == [
        SSEEvent("message", ""),
        SSEEvent("message", "\n"),
        SSEEvent("message", "x"),
        SSEEvent("message", "y", id=""),
    ]


def test_data_lines_join_with_lf_and_the_trailing_lf_is_removed(chunker: Chunker) -> None:
    stream = b"data: a\ndata: b\ndata:\n\ndata:\ndata:\n\n"
    assert datas(decode(stream, chunker)) == ["a\nb\n", "\n"]


def test_event_field_sets_the_type_default_is_message(chunker: Chunker) -> None:
    stream = (
        b"event: update\ndata: a\n\ndata: b\n\nevent:\ndata: c\n\nevent: x\nevent: y\ndata: d\n\n"
    )
    events = decode(stream, chunker)
    assert [(e.event, e.data) for e in events] == [
        ("update", "a"),
        ("message", "b"),
        ("message", "c"),
        ("y", "d"),
    ]


def test_id_sets_the_last_event_id_which_stays_in_force(chunker: Chunker) -> None:
    stream = b"data: a\n\nid: 1\ndata: b\n\ndata: c\n\nid: 2\n\ndata: d\n\nid\ndata: e\n\n"
    assert [(e.data, e.id) for e in decode(stream, chunker)] == [
        ("a", None),
        ("b", "1"),
        ("c", "1"),
        ("d", "2"),  # set by a block that dispatched nothing
        ("e", ""),  # an empty id resets it to the empty string
    ]


def test_id_containing_nul_is_ignored(chunker: Chunker) -> None:
    stream = b"id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n"
    assert [e.id for e in decode(stream, chunker)] == ["7", "7"]


def test_retry_is_set_only_when_all_ascii_digits(chunker: Chunker) -> None:
    stream = (
        b"retry: 1500\ndata: a\n\n"
        b"retry: 12a\nretry: -1\nretry: 1.5\nretry: \nretry\nretry:  7\n"
        b"retry: \xd9\xa1\ndata: b\n\n"
        b"retry: 0042\ndata: c\n\n"
    )
    assert [(e.data, e.retry) for e in decode(stream, chunker)] == [
        ("a", 1500),
        ("b", 1500),
        ("c", 42),
    ]


def test_retry_with_too_many_digits_is_ignored() -> None:
    """The issue's attack: `retry:` and ~1M digits (under the 1 MiB cap) was converted to an
    integer, quadratic work on the event loop. A value past MAX_RETRY_DIGITS is ignored, the
    retry in force stays."""
    digits = "9" * 1_040_000
    events = decode(f"retry: 7\ndata: a\n\nretry: {digits}\ndata: b\n\n".encode())
    assert [(e.data, e.retry) for e in events] == [("a", 7), ("b", 7)]
    longest = "9" * MAX_RETRY_DIGITS
    assert decode(f"retry: {longest}\ndata: c\n\n".encode())[0].retry == int(longest)


def test_named_events_without_data_are_reported_in_place_when_asked() -> None:
    decoder = SSEDecoder(report_empty_named=True)
    events = decoder.feed(b"data: a\n\nevent: ping\n\nevent: error\n\ndata: b\n\n")
    assert [(e.event, e.data) for e in events] == [
        ("message", "a"),
        ("ping", ""),
        ("error", ""),
        ("message", "b"),
    ]


def test_dropped_event_types_are_bounded() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"event: ping\n\n" * 10_000 + b"event: error\n\n")
    assert len(decoder.dropped_event_types) == MAX_DROPPED_EVENT_TYPES
    assert decoder.dropped_event_types[-1] == "error"


def test_unknown_fields_are_ignored(chunker: Chunker) -> None:
    stream = b"foo: bar\nDATA: x\ndat: y\ndata : z\ndata: a\nEvent: e\n\n"
    assert decode(stream, chunker) == [SSEEvent("message", "a")]


# --- dispatch ------------------------------------------------------------------------------


def test_blank_line_dispatches_the_event(chunker: Chunker) -> None:
    stream = b"id: 1\nretry: 10\nevent: e\ndata: a\n\n"
    assert decode(stream, chunker) == [SSEEvent("e", "a", id="1", retry=10)]


def test_empty_data_buffer_is_not_dispatched_but_type_is_reset(chunker: Chunker) -> None:
    stream = b"event: lost\n\n\n\nid: 3\n\nretry: 5\n\ndata: a\n\n"
    assert decode(stream, chunker) == [SSEEvent("message", "a", id="3", retry=5)]


def test_unfinished_event_is_discarded_at_close(chunker: Chunker) -> None:
    assert decode(b"data: a\n", chunker) == []
    assert decode(b"data: a\n\ndata: b\n", chunker) == [SSEEvent("message", "a")]
    assert decode(b"data: a\n\ndata: b", chunker) == [SSEEvent("message", "a")]


def test_events_are_returned_by_the_feed_that_completes_them() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b\n\ndata: c\n\nda") == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
        SSEEvent("message", "c"),
    ]
    assert decoder.feed(b"ta: d\n") == []
    assert decoder.feed(b"\n") == [SSEEvent("message", "d")]
    assert decoder.feed(b"") == []
    assert decoder.close() == []


# --- UTF-8 ---------------------------------------------------------------------------------


def test_invalid_utf8_becomes_replacement_character(chunker: Chunker) -> None:
    stream = b"data: a\xffb\xe2\x82c\nevent: \xc3\ndata: \xed\xa0\x80\n\n"
    events = decode(stream, chunker)
    assert events == [
        SSEEvent("\ufffd", "a\ufffdb\ufffdc\n" + b"\xed\xa0\x80".decode("utf-8", "replace"))
    ]
    # The truncated sequence at the end of a line must not swallow the line end.
    assert datas(decode(b"data: \xe2\x82\ndata: x\n\n", chunker)) == ["\ufffd\nx"]


def test_multibyte_sequences_split_across_chunks_decode_identically() -> None:
    value = "€ · 😀 ≈ ü"
    stream = f"event: ≈\ndata: {value}\nid: é\n\n".encode()
    expected = [SSEEvent("≈", value, id="é")]
    assert decode(stream) == expected
    for cut in range(1, len(stream)):
        assert decode_chunks([stream[:cut], stream[cut:]]) == expected
    assert decode(stream, byte_by_byte) == expected


# --- long input, limits --------------------------------------------------------------------


def test_4_mib_single_line_event_in_tcp_sized_pieces() -> None:
    payload = b"x" * (4 * 1024 * 1024)
    stream = b"data: " + payload + b"\n\n"
    chunks = [stream[i : i + 1460] for i in range(0, len(stream), 1460)]
    events = decode_chunks(chunks, max_event_bytes=len(payload))
    assert len(events) == 1
    assert events[0].data == payload.decode()


@pytest.mark.parametrize("limit", [16, 1000])
def test_event_data_past_the_limit_raises_naming_the_limit(chunker: Chunker, limit: int) -> None:
    at_limit = b"data: " + b"a" * limit + b"\n\n"
    assert datas(decode(at_limit, chunker, max_event_bytes=limit)) == ["a" * limit]
    over = b"data: " + b"a" * (limit + 1) + b"\n\n"
    with pytest.raises(SSEEventTooLarge, match=rf"\b{limit} bytes\b"):
        decode(over, chunker, max_event_bytes=limit)


def test_limit_counts_the_lf_joining_data_lines(chunker: Chunker) -> None:
    # "aaaa\nbbbb" is 9 bytes.
    stream = b"data: aaaa\ndata: bbbb\n\n"
    assert datas(decode(stream, chunker, max_event_bytes=9)) == ["aaaa\nbbbb"]
    with pytest.raises(SSEEventTooLarge, match="8 bytes"):
        decode(stream, chunker, max_event_bytes=8)


def test_limit_counts_utf8_bytes_not_characters() -> None:
    stream = "data: €€\n\n".encode()  # 6 bytes of data
    assert datas(decode(stream, max_event_bytes=6)) == ["€€"]
    with pytest.raises(SSEEventTooLarge):
        decode(stream, max_event_bytes=5)


def test_too_large_is_a_value_error_and_keeps_earlier_events() -> None:
    decoder = SSEDecoder(max_event_bytes=4)
    with pytest.raises(ValueError) as caught:
        decoder.feed(b"data: ok\n\ndata: toolong\n\n")
    assert isinstance(caught.value, SSEEventTooLarge)
    assert caught.value.limit == 4
    assert caught.value.events == [SSEEvent("message", "ok")]
    # A failed decoder does not quietly carry on from a broken state.
    with pytest.raises(SSEEventTooLarge):
        decoder.feed(b"data: x\n\n")


def test_memory_is_bounded_for_a_never_ending_line() -> None:
    limit = 1024
    decoder = SSEDecoder(max_event_bytes=limit)
    fed = 0
    with pytest.raises(SSEEventTooLarge, match=f"{limit} bytes"):
        decoder.feed(b"data: ")
        while fed < 100 * 1024 * 1024:
            decoder.feed(b"x" * 100)
            fed += 100
    # The line was refused after the limit plus a small slack, not after 100 MiB.
    assert fed <= limit + 64 * 1024


def test_never_ending_comment_line_is_bounded_too() -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(SSEEventTooLarge):
        for _ in range(10_000):
            decoder.feed(b":" + b"x" * 99)


def test_overlong_line_raises_however_it_is_chunked(chunker: Chunker) -> None:
    stream = b"data: a\n\n:" + b"x" * 200_000 + b"\ndata: b\n\n"
    with pytest.raises(SSEEventTooLarge):
        decode(stream, chunker, max_event_bytes=1024)


# --- API -----------------------------------------------------------------------------------


def test_event_is_a_frozen_slotted_dataclass() -> None:
    event = SSEEvent("message", "a")
    assert (event.event, event.data, event.id, event.retry) == ("message", "a", None, None)
    assert not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "b"  # type: ignore[misc]
    decoded = decode(b"data: a\n\n")[0]
    assert decoded == event
    assert hash(decoded) == hash(event)
    assert repr(decoded) == "SSEEvent(event='message', data='a', id=None, retry=None)"


def test_accepts_any_bytes_like_chunk() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(bytearray(b"data: a\n")) == []  # type: ignore[arg-type]
    assert decoder.feed(memoryview(b"\n")) == [SSEEvent("message", "a")]  # type: ignore[arg-type]


def test_feed_after_close_is_refused() -> None:
    decoder = SSEDecoder()
    assert decoder.close() == []
    assert decoder.close() == []
    with pytest.raises(ValueError, match="close"):
        decoder.feed(b"data: a\n\n")


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SSEDecoder(max_event_bytes=0)


# --- properties ----------------------------------------------------------------------------


def reference_decode(stream: bytes) -> list[SSEEvent]:
    """The spec transcribed as plainly as possible, on the whole stream at once."""
    if stream.startswith(BOM):
        stream = stream[len(BOM) :]
    lines = re.split("\r\n|\r|\n", stream.decode("utf-8", "replace"))
    lines.pop()  # not terminated by a line end: discarded at end of stream
    events: list[SSEEvent] = []
    data, event_type, last_id, retry = "", "", None, None
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                continue
            events.append(SSEEvent(event_type or "message", data[:-1], last_id, retry))
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif (
            name == "retry"
            and value
            and len(value) <= MAX_RETRY_DIGITS
            and all(c in "0123456789" for c in value)
        ):
            retry = int(value)
    return events


_text = st.text(
    alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=6
).map(str.encode)
_odd = st.sampled_from(
    [
        b"\xe2\x82\xac",  # complete 3-byte sequence
        b"\xe2\x82",  # truncated sequence
        b"\xf0\x9f\x98\x80",  # 4-byte sequence
        b"\xff",
        b"\xc3",
        b"\x00",
        BOM,
        "\u2028".encode(),
        "\u0085".encode(),
        b":",
        b" ",
        b"  ",
        b"42",
        b"7",
    ]
)
_value = st.lists(st.one_of(_text, _odd), max_size=4).map(b"".join)
_name = st.sampled_from([b"data", b"event", b"id", b"retry", b"foo", b"", b"dat", b"DATA"])
_separator = st.sampled_from([b"", b":", b": ", b":  "])
_field = st.tuples(_name, _separator, _value).map(b"".join)
_comment = _value.map(lambda value: b":" + value)
_line = st.one_of(_field, _field, _comment, st.just(b""), st.just(b""))
_eol = st.sampled_from([b"\n", b"\r", b"\r\n"])
_stream = st.tuples(
    st.sampled_from([b"", BOM, BOM[:2]]),
    st.lists(st.tuples(_line, _eol).map(b"".join), max_size=25).map(b"".join),
    st.one_of(st.just(b""), _line),  # an unterminated last line
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(stream=_stream, data=st.data())
def test_any_chunking_yields_the_same_events_as_feeding_whole(
    stream: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12).map(sorted))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode_chunks(chunks) == decode(stream)


@settings(max_examples=300, deadline=None)
@given(stream=_stream)
def test_decoder_agrees_with_the_spec_transcription(stream: bytes) -> None:
    assert decode(stream) == reference_decode(stream)
    assert decode(stream, byte_by_byte) == reference_decode(stream)


# --- Jangar's example streams ----------------------------------------------------------------


def fixture_events(name: str, chunker: Chunker) -> list[SSEEvent]:
    return decode((FIXTURES / name).read_bytes(), chunker)


ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.sse"))


def test_fixtures_were_copied() -> None:
    assert len(ALL_FIXTURES) == 9


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_jangar_stream_is_json_data_events_ending_with_done(name: str, chunker: Chunker) -> None:
    body = (FIXTURES / name).read_bytes()
    events = fixture_events(name, chunker)
    assert len(events) == body.count(b"\ndata: ") + 1
    assert all(e.event == "message" and e.id is None and e.retry is None for e in events)
    assert events[-1].data == "[DONE]"
    for event in events[:-1]:
        assert isinstance(json.loads(event.data), dict)


def test_approve_clean_stream(chunker: Chunker) -> None:
    events = fixture_events("approve_clean.sse", chunker)
    assert len(events) == 29
    frames = [json.loads(e.data) for e in events[:-1]]
    assert all(f["object"] == "chat.completion.chunk" for f in frames)
    content = "".join(choice["delta"].get("content", "") for f in frames for choice in f["choices"])
    assert '"verdict":"approve"' in content.replace(" ", "")
    reasoning = "".join(
        choice["delta"].get("reasoning_content", "") for f in frames for choice in f["choices"]
    )
    assert "5 × $100.98" in reasoning  # multi-byte characters survive any chunking
    assert any("usage" in f for f in frames)
    assert frames[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("name", "code"),
    [("model_not_found.sse", "model_not_found"), ("stream_required.sse", "stream_required")],
)
def test_pre_stream_error_bodies_are_two_events(name: str, code: str, chunker: Chunker) -> None:
    events = fixture_events(name, chunker)
    assert len(events) == 2
    assert json.loads(events[0].data)["error"]["code"] == code
    assert events[1].data == "[DONE]"


def test_midstream_error_frames_are_decoded(chunker: Chunker) -> None:
    frames = [
        json.loads(e.data) for e in fixture_events("midstream_upstream_error.sse", chunker)[:-1]
    ]
    codes = [f["error"]["code"] for f in frames if "error" in f]
    assert codes == ["responseStreamDisconnected", "codex_error"]


def test_named_event_without_data_is_not_dispatched_but_recorded() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: error\n\n\n: comment\n\ndata: x\n\n") == [
        SSEEvent("message", "x", None, None)
    ]
    assert list(decoder.dropped_event_types) == ["error"]
