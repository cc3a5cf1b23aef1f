"""Noisy answer text in, the last valid review out.

Jangar's joined `delta.content` is more than the answer (jangar/CONTRACT.md "What lands in
delta.content"): a leading newline, a rate-limit block, a plan, tool output in code fences
(which may itself be JSON, e.g. `{"exit_code":0}`), earlier agent messages, the answer (maybe in
a ```json fence), trailing prose. So the review is searched for, never assumed:

1. Candidates are the top-level JSON objects of the text: scanning left to right, a decode is
   tried at each `{`; after a successful decode the scan resumes after the decoded span, so an
   object nested in another (tool output quoting a review, say) is never a candidate on its own.
   Bodies of ```json fences are scanned the same way and added (a fence opens a line, and a
   JSON string cannot hold a raw newline, so this adds nothing inside other JSON).
2. The review is the last candidate (by position) that validates as `LLMReviewResponse`.
3. No candidate at all: `invalid_json`. Candidates but none valid: `invalid_schema`, naming the
   first problem of the last candidate that has a `verdict` key (else of the last candidate).

The work is bounded whatever the input: at most `MAX_DECODE_ATTEMPTS` decodes, and at most
`MAX_SCAN_CHARS` characters examined by them in total (a failed decode reports where it
stopped, so its cost is known). A megabyte of `{` costs one cheap failure per brace; deeply
nested or long unterminated structures exhaust the budget and end the scan with what was found
so far, plus the objects of the last `TAIL_CHARS` characters, scanned with a fresh budget
(the answer comes last). Inputs are already capped upstream by `LLM_MAX_RESPONSE_BYTES`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from torghut.errors import ReviewError, ReviewErrorCode
from torghut.trading.llm.schema import LLMReviewResponse

MAX_DECODE_ATTEMPTS = 10_000
MAX_SCAN_CHARS = 4_000_000
MAX_CANDIDATES = 1_000
# When the budget runs out, the last this-many characters are scanned again with a fresh one:
# the answer comes last, so noise before it must not hide it.
TAIL_CHARS = 65_536
# Longest part of a validation problem quoted in an `invalid_schema` message.
PROBLEM_LIMIT = 200

_FENCE = re.compile(r"^[ \t]*```[ \t]*json[ \t]*\r?\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_DECODER = json.JSONDecoder()


@dataclass
class _Budget:
    attempts: int
    chars: int

    @property
    def exhausted(self) -> bool:
        return self.attempts <= 0 or self.chars <= 0


def _scan(text: str, offset: int, budget: _Budget, found: dict[int, dict[str, Any]]) -> None:
    """Add the top-level JSON objects of `text` to `found`, keyed by absolute position."""
    pos = text.find("{")
    while pos != -1 and not budget.exhausted and len(found) < MAX_CANDIDATES:
        budget.attempts -= 1
        try:
            obj, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            budget.chars -= max(exc.pos - pos, 1)
            pos = text.find("{", pos + 1)
            continue
        except (RecursionError, ValueError):
            # Too deep a nesting, or an integer past Python's digit limit: charge the rest of
            # the text, the most such a decode can have looked at.
            budget.chars -= len(text) - pos
            pos = text.find("{", pos + 1)
            continue
        budget.chars -= end - pos
        if isinstance(obj, dict):
            found.setdefault(offset + pos, obj)
        pos = text.find("{", end)


def find_objects(text: str) -> list[dict[str, Any]]:
    """Every candidate JSON object of `text`, in order of position (rules in the docstring)."""
    budget = _Budget(MAX_DECODE_ATTEMPTS, MAX_SCAN_CHARS)
    found: dict[int, dict[str, Any]] = {}
    _scan(text, 0, budget, found)
    for match in _FENCE.finditer(text):
        if budget.exhausted:
            break
        _scan(match.group(1), match.start(1), budget, found)
    if budget.exhausted and len(text) > TAIL_CHARS:
        tail_start = len(text) - TAIL_CHARS
        _scan(text[tail_start:], tail_start, _Budget(MAX_DECODE_ATTEMPTS, MAX_SCAN_CHARS), found)
    return [found[key] for key in sorted(found)]


def _problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "object"
    problem = f"{where}: {first['msg']}"
    return problem if len(problem) <= PROBLEM_LIMIT else problem[: PROBLEM_LIMIT - 1] + "…"


def extract_review(text: str) -> tuple[LLMReviewResponse, dict[str, Any]]:
    """The last valid review in `text`, and its raw object (unknown keys included).

    Raises `ReviewError` `invalid_json` when no JSON object is in the text, `invalid_schema`
    when objects are but none is a valid review.
    """
    candidates = find_objects(text)
    if not candidates:
        raise ReviewError(ReviewErrorCode.INVALID_JSON, "no JSON object found in the answer")
    errors: list[tuple[dict[str, Any], ValidationError]] = []
    for obj in reversed(candidates):
        try:
            return LLMReviewResponse.model_validate(obj), obj
        except ValidationError as exc:
            errors.append((obj, exc))
    # errors[0] is the last candidate; prefer the last one that at least meant to be a review.
    blamed = next((exc for obj, exc in errors if "verdict" in obj), errors[0][1])
    count = len(candidates)
    raise ReviewError(
        ReviewErrorCode.INVALID_SCHEMA,
        f"{count} JSON object{'s' if count != 1 else ''} found, none a valid review; "
        f"{_problem(blamed)}",
    )
