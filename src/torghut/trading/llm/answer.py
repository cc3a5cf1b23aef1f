"""Noisy answer text in, the last valid review out.

Jangar's joined `delta.content` is more than the answer (jangar/CONTRACT.md "What lands in
delta.content"): a leading newline, a rate-limit block, a plan, tool output in code fences
(which may itself be JSON, e.g. `{"exit_code":0}`), earlier agent messages, the answer (maybe in
a ```json fence), trailing prose. So the review is searched for, never assumed:

1. Candidates are the outermost JSON objects of the text: an object nested in another (tool
   output quoting a review, say) is never a candidate on its own. Only an object of at most
   `MAX_OBJECT_CHARS` characters can be a candidate (a review is a few hundred); a longer one
   is not seen, and objects inside it count as outermost.
2. The review is the last candidate (by position) that validates as `LLMReviewResponse`.
3. No candidate at all: `invalid_json`. Candidates but none valid: `invalid_schema`, naming the
   first problem of the last candidate that has a `verdict` key (else of the last candidate).

How, and why it is bounded whatever the input (a hostile gateway controls it):
- The scan runs from the END of the text backwards, a window at a time, so the last
  candidates are the ones kept and the tail is always examined first: no amount of noise
  before the answer can use up the budget before the answer is seen.
- A decode is tried only where `{` is followed by optional whitespace and `"` (an object
  with a key; `{{{{…` costs nothing), found by a regex within the window.
- Each decode runs on a slice of at most `MAX_OBJECT_CHARS` characters: the standard
  decoder's failures cost O(position in the string they are given) (it counts the lines up
  to the error), so a decode on the whole text costs O(text) each time it fails.
- At most `MAX_DECODE_ATTEMPTS` decodes. The scan stops early once the last valid candidate
  can no longer be inside a larger object (nothing further left can reach it).
Deep nesting (RecursionError) and oversized integers (ValueError) are failed decodes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from torghut.errors import ReviewError, ReviewErrorCode
from torghut.trading.llm.schema import LLMReviewResponse

MAX_OBJECT_CHARS = 16_384
MAX_DECODE_ATTEMPTS = 1_000
# Text examined per regex pass, from the end backwards.
WINDOW_CHARS = 65_536
# Longest part of a validation problem quoted in an `invalid_schema` message.
PROBLEM_LIMIT = 200

_OBJECT_START = re.compile(r'\{\s*"')
# A start may straddle the window's right edge by this much (the whitespace run).
_EDGE = 256
_DECODER = json.JSONDecoder()
# The response model defers its build to here (schema.py), and it is built now, on the importing
# thread, rather than by the first validation, which may run on two worker threads at once.
LLMReviewResponse.model_rebuild()


@dataclass(slots=True)
class _Candidate:
    start: int
    end: int
    obj: dict[str, Any]
    review: LLMReviewResponse | None
    error: ValidationError | None


def _validate(obj: dict[str, Any]) -> tuple[LLMReviewResponse | None, ValidationError | None]:
    try:
        return LLMReviewResponse.model_validate(obj), None
    except ValidationError as exc:
        return None, exc


def _starts(text: str, window_start: int, window_end: int) -> list[int]:
    edge = min(len(text), window_end + _EDGE)
    return [
        m.start()
        for m in _OBJECT_START.finditer(text, window_start, edge)
        if m.start() < window_end
    ]


def _candidates(text: str) -> list[_Candidate]:
    """The outermost objects of `text`, right to left (rules in the module docstring)."""
    found: list[_Candidate] = []  # by start, descending
    valid: _Candidate | None = None  # the rightmost valid candidate still standing
    attempts = 0
    window_end = len(text)
    while window_end > 0:
        window_start = max(0, window_end - WINDOW_CHARS)
        for pos in reversed(_starts(text, window_start, window_end)):
            if valid is not None and pos < valid.end - MAX_OBJECT_CHARS:
                return found  # nothing from here on can enclose the review found
            if attempts >= MAX_DECODE_ATTEMPTS:
                return found
            attempts += 1
            try:
                obj, size = _DECODER.raw_decode(text[pos : pos + MAX_OBJECT_CHARS])
            except (ValueError, RecursionError):
                continue
            if type(obj) is not dict:
                continue
            end = pos + size
            # Candidates starting inside this object were nested in it: they are not.
            while found and found[-1].start < end:
                if found.pop() is valid:
                    valid = None
            review, error = _validate(obj) if "verdict" in obj else (None, None)
            candidate = _Candidate(pos, end, obj, review, error)
            found.append(candidate)
            if valid is None and review is not None:
                valid = candidate
        window_end = window_start
    return found


def find_objects(text: str) -> list[dict[str, Any]]:
    """The candidate JSON objects of `text`, in order of position (rules in the docstring)."""
    return [c.obj for c in reversed(_candidates(text))]


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
    candidates = _candidates(text)  # right to left
    if not candidates:
        raise ReviewError(ReviewErrorCode.INVALID_JSON, "no JSON object found in the answer")
    for candidate in candidates:
        if candidate.review is not None:
            return candidate.review, candidate.obj
    # Prefer the last candidate that at least meant to be a review.
    blamed = next((c for c in candidates if c.error is not None), None)
    if blamed is not None and blamed.error is not None:
        problem = _problem(blamed.error)
    else:
        _, error = _validate(candidates[0].obj)
        problem = _problem(error) if error is not None else "object: not a review"
    count = len(candidates)
    raise ReviewError(
        ReviewErrorCode.INVALID_SCHEMA,
        f"{count} JSON object{'s' if count != 1 else ''} found, none a valid review; {problem}",
    )
