"""Finding the review in noisy answer text, including the real Jangar examples."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from torghut.errors import ReviewError, ReviewErrorCode
from torghut.trading.llm import answer
from torghut.trading.llm.answer import extract_review, find_objects

# The byte-exact Jangar examples: the repository's copy when there is one, else the shared one.
_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "fixtures" / "jangar",
    Path("/work/shared/jangar/examples"),
]
EXAMPLES = next((p for p in _CANDIDATES if (p / "approve_clean.sse").is_file()), _CANDIDATES[-1])

APPROVE = (
    '{"verdict":"approve","confidence":0.86,"adjusted_qty":null,"adjusted_order_type":null,'
    '"limit_price":null,"rationale":"within limits","risk_flags":[]}'
)
VETO_PRETTY = json.dumps(
    {
        "verdict": "veto",
        "confidence": 0.93,
        "adjusted_qty": None,
        "adjusted_order_type": None,
        "limit_price": None,
        "rationale": "notional above limit",
        "risk_flags": ["max_notional"],
    },
    indent=2,
)


def sse_content(name: str) -> str:
    """The joined `choices[].delta.content` of an example stream: a deliberately tiny parser,
    independent of the production decoder."""
    parts: list[str] = []
    if not (EXAMPLES / f"{name}.sse").is_file():
        pytest.skip(f"Jangar example {name}.sse not found in {EXAMPLES}")
    raw = (EXAMPLES / f"{name}.sse").read_text(encoding="utf-8")
    for block in raw.split("\n\n"):
        for line in block.split("\n"):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk: dict[str, Any] = json.loads(line[len("data: ") :])
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    parts.append(content)
    return "".join(parts)


def _code(text: str) -> ReviewErrorCode:
    with pytest.raises(ReviewError) as info:
        extract_review(text)
    return info.value.code


# --- the real examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        pytest.param("approve_clean", "approve", id="approve_clean"),
        pytest.param("veto_clean", "veto", id="veto_clean"),
        pytest.param("ratelimit_preamble", "approve", id="ratelimit_preamble"),
        pytest.param("preamble_message", "approve", id="preamble_message"),
    ],
)
def test_real_examples(name: str, verdict: str) -> None:
    review, raw = extract_review(sse_content(name))
    assert review.verdict.value == verdict
    assert raw["verdict"] == verdict


def test_real_veto_flags() -> None:
    review, _ = extract_review(sse_content("veto_clean"))
    assert review.risk_flags == ["max_notional"]


def test_real_not_json_answer() -> None:
    text = sse_content("not_json_answer")
    assert "I approve this trade" in text
    assert _code(text) is ReviewErrorCode.INVALID_JSON


# --- every kind of noise ----------------------------------------------------------------------

RATE_LIMITS = (
    "\n\n> **Rate limits**\n> Plan: pro\n> Primary: 65% left · 5h window · resets Feb 9\n"
    "> Secondary: 88% left · 7d window\n\n"
)
PLAN = "- [x] Read the request\n- [ ] Check exposure {see below}\n- [ ] Answer\n"
TOOL_JSON = '```\n$ cat limits.json\n{"exit_code":0,"stdout":"{\\"max\\": 5000}"}\n```\n'
TOOL_REVIEW_LOOKALIKE = (
    '```\n$ jq . last_review.json\n{"exit_code":0,"output":{"verdict":"veto","confidence":0.99,'
    '"rationale":"old review","risk_flags":[]}}\n```\n'
)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        pytest.param(APPROVE, "approve", id="bare"),
        pytest.param("\n" + APPROVE, "approve", id="leading-newline"),
        pytest.param(RATE_LIMITS + "\n" + APPROVE, "approve", id="rate-limit-block"),
        pytest.param(PLAN + APPROVE, "approve", id="markdown-plan-with-braces"),
        pytest.param(TOOL_JSON + APPROVE, "approve", id="tool-json-before"),
        pytest.param(APPROVE + "\n" + TOOL_JSON, "approve", id="tool-json-after"),
        pytest.param(TOOL_REVIEW_LOOKALIKE + APPROVE, "approve", id="nested-lookalike-ignored"),
        pytest.param(
            "I'll check the exposure limits first." + APPROVE, "approve", id="earlier-message"
        ),
        pytest.param("```json\n" + VETO_PRETTY + "\n```\n", "veto", id="json-fence"),
        pytest.param(
            "Here it is:\n```json\n" + VETO_PRETTY + "\n```\nLet me know.", "veto", id="fence+prose"
        ),
        pytest.param(
            APPROVE + "\nThat is my answer; {not json} follows.", "approve", id="trailing"
        ),
        pytest.param(VETO_PRETTY + "\nOn reflection:\n" + APPROVE, "approve", id="last-valid-wins"),
        pytest.param(
            APPROVE + '\n{"verdict":"veto","confidence":"high","rationale":"x"}',
            "approve",
            id="later-invalid-skipped",
        ),
        pytest.param(
            RATE_LIMITS + PLAN + TOOL_JSON + "I'll check first.```json\n" + VETO_PRETTY + "\n```",
            "veto",
            id="everything",
        ),
        pytest.param('{"broken": [1, 2}\n' + APPROVE, "approve", id="broken-object-before"),
    ],
)
def test_noise(text: str, verdict: str) -> None:
    review, raw = extract_review(text)
    assert review.verdict.value == verdict
    assert raw["verdict"] == verdict


def test_unknown_keys_kept_in_raw_object() -> None:
    review, raw = extract_review(APPROVE[:-1] + ',"notes":"n"}')
    assert raw["notes"] == "n"
    assert review.model_extra == {"notes": "n"}


def test_only_tool_json_is_invalid_schema() -> None:
    with pytest.raises(ReviewError) as info:
        extract_review("Running checks.\n" + TOOL_JSON + "Done.")
    assert info.value.code is ReviewErrorCode.INVALID_SCHEMA
    assert "verdict" in info.value.message
    assert info.value.counts_for_breaker


def test_invalid_review_blamed_over_later_tool_json() -> None:
    text = '{"verdict":"approve","confidence":"high","rationale":"ok"}\n' + TOOL_JSON
    with pytest.raises(ReviewError) as info:
        extract_review(text)
    assert info.value.code is ReviewErrorCode.INVALID_SCHEMA
    assert info.value.message.startswith("2 JSON objects found")
    assert "confidence" in info.value.message


def test_schema_message_is_short() -> None:
    text = json.dumps({"verdict": "approve", "confidence": 0.9, "rationale": "x" * 5000})
    with pytest.raises(ReviewError) as info:
        extract_review(text)
    assert len(info.value.message) < 300
    assert "x" * 100 not in info.value.message  # the input itself is not quoted


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("I approve this trade, it looks fine.", id="prose"),
        pytest.param("{not json}", id="braces-not-json"),
        pytest.param("[1, 2, 3]", id="array-only"),
        pytest.param('"just a string"', id="string-only"),
        pytest.param('{"verdict": "approve", "confidence": 0.9', id="truncated"),
    ],
)
def test_invalid_json(text: str) -> None:
    assert _code(text) is ReviewErrorCode.INVALID_JSON


def test_nested_objects_are_not_candidates() -> None:
    assert find_objects('a {"x": {"y": 1}} b {"z": 2}') == [{"x": {"y": 1}}, {"z": 2}]


# --- pathological input is bounded ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{" * 1_000_000, id="1MB-of-braces"),
        pytest.param('{"a":' * 200_000, id="deep-unclosed-nesting"),
        pytest.param('{"a":[' * 100_000 + "]}" * 10, id="deep-arrays"),
        pytest.param('{"a":"' + "{" * 1_000_000, id="unterminated-string-of-braces"),
        pytest.param("{" + "1" * 100_000, id="huge-number"),
        pytest.param(('{"a":[' + "1," * 2_000) * 300, id="quadratic-attempt"),
    ],
)
def test_pathological_input_is_bounded(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(ReviewError) as info:
        extract_review(text)
    assert info.value.code in (ReviewErrorCode.INVALID_JSON, ReviewErrorCode.INVALID_SCHEMA)
    assert time.monotonic() - started < 5


def test_budget_caps_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is spent from the end: noise after the review can exhaust it, noise before
    it cannot."""
    monkeypatch.setattr(answer, "MAX_DECODE_ATTEMPTS", 3)
    noise = '{"a" {"b" {"c" '
    assert extract_review(noise * 50 + APPROVE)[0].verdict.value == "approve"
    assert _code(APPROVE + " " + noise) is ReviewErrorCode.INVALID_JSON
    monkeypatch.setattr(answer, "MAX_DECODE_ATTEMPTS", 4)
    assert extract_review(APPROVE + " " + noise)[0].verdict.value == "approve"


def test_answer_after_exhausting_noise_is_found_in_the_tail() -> None:
    noise = ('{"a":[' + "1," * 2_000) * 300
    review, _ = extract_review(noise + "\n" + APPROVE + "\nDone.")
    assert review.verdict.value == "approve"


# --- the cases (13): each lost the review before -------------------------------------


@pytest.mark.parametrize(
    "noise",
    [
        pytest.param('{"exit_code":0,"n":1}\n' * 1_001, id="1001-small-objects"),
        pytest.param("[" + ",".join(f'{{"i":{i}}}' for i in range(2_000)) + "]\n", id="array-2000"),
        pytest.param("{" * 12_000 + "\n", id="12K-braces"),
        pytest.param('{"a":' * 12_000 + "\n", id="12K-open-objects"),
        pytest.param(("x" * 70 + ' {"k": [1, 2, {"v": "w"}]}\n') * 11_000, id="1MiB-noise"),
    ],
)
def test_the_review_after_heavy_noise_is_found(noise: str) -> None:
    review, raw = extract_review(noise + APPROVE)
    assert review.verdict.value == "approve"
    assert raw["rationale"] == "within limits"


def test_a_review_nested_in_a_later_object_is_not_a_candidate() -> None:
    outer = '{"verdict":"veto","confidence":0.9,"rationale":"x","meta":' + APPROVE + "}"
    review, _ = extract_review(outer)
    assert review.verdict.value == "veto"
    wrapped = '{"note":"wrapped","inner":' + APPROVE + "}"
    assert _code(wrapped) is ReviewErrorCode.INVALID_SCHEMA
