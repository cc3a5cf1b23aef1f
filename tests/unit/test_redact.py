"""`errors.redact`, the one function every peer string passes (issue 12 item 1), and
`errors.sanitize` (issue 13): properties over arbitrary text and cuts."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from torghut.errors import REDACTED, redact, redact_json, sanitize

SECRET = "SECRETKEY0123456789abc"
# Text around the secret never holds its first letter, so any "S…" in the output came from it.
_noise = st.text(st.characters(exclude_characters="S"), max_size=400)


@given(before=_noise, after=_noise, limit=st.integers(2, 700), cut=st.integers(0, 60))
def test_no_prefix_of_8_survives_any_cut(before: str, after: str, limit: int, cut: int) -> None:
    # A body already cut by a byte cap somewhere inside or after the secret...
    text = (
        (before + SECRET + after)[: len(before) + cut]
        if cut < len(SECRET)
        else (before + SECRET + after)
    )
    for out in (
        redact(text, [SECRET], limit=limit, cut=True),
        redact(before + SECRET + after, [SECRET], limit=limit),
        redact(before + SECRET + after, [SECRET], limit=limit, one_line=True),
    ):
        assert SECRET[:8] not in out
        assert limit is None or len(out) <= limit


@given(text=st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=300))
def test_sanitized_text_has_no_control_nul_or_surrogate(text: str) -> None:
    for one_line in (False, True):
        out = sanitize(text, one_line=one_line)
        for c in out:
            category = unicodedata.category(c)
            assert category != "Cs"
            assert category != "Cc" or (not one_line and c in "\t\n\r")
        out.encode("utf-8")  # always encodable


# `sanitize` as it was written before its fast path for printable ASCII (issue 16): the same.
def _sanitize_by_regex(text: str, one_line: bool) -> str:
    if one_line:
        text = re.sub(r"\s+", " ", text).strip()
        return re.sub("[\x00-\x1f\x7f-\x9f\ud800-\udfff]", "\ufffd", text)
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]", "\ufffd", text)


@given(
    text=st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=300)
    | st.text(st.characters(min_codepoint=0, max_codepoint=0xA0), max_size=300),
    one_line=st.booleans(),
)
def test_sanitize_equals_its_regex_form(text: str, one_line: bool) -> None:
    assert sanitize(text, one_line=one_line) == _sanitize_by_regex(text, one_line)


def test_json_keys_are_redacted_too() -> None:
    value = {SECRET: [f"Bearer {SECRET}", {"k\x00": SECRET}], "n": 1}
    assert redact_json(value, [SECRET]) == {
        REDACTED: [f"Bearer {REDACTED}", {"k\ufffd": REDACTED}],
        "n": 1,
    }


def test_a_cut_inside_a_secret_drops_its_start() -> None:
    assert redact("token SECRETKEY01", [SECRET], cut=True) == "token "
    assert redact("x" * 10 + SECRET, [SECRET], limit=14) == "x" * 10 + REDACTED
    assert redact("x" * 10 + " " + SECRET, [SECRET], limit=10) == "x" * 9 + "…"
    # Not a cut: text ending like a secret's start is kept.
    assert redact("token SECRETKEY01", [SECRET]) == "token SECRETKEY01"
