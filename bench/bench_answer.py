"""Benchmark answer extraction (`trading/llm/answer.py`) on the worst inputs of issue 13.

Run: `python bench/bench_answer.py` (`--no-baseline` to skip the slow baseline). Each input is
noise followed by a valid review; the figure is CPU time (`time.process_time`) of one
`extract_review`, best of 3, and what it found. Target: every input under 50 ms of CPU, the
review found.

Baseline, measured in the same run: `forward-scan`, the previous algorithm (kept below): a
left-to-right decode at every `{` on the whole text, at most 10,000 decodes and 1,000
candidates, then the last 64 KiB again. Its failed decodes cost O(position) (the decoder
counts the lines up to the error), and its caps keep the first candidates, not the last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from torghut.errors import ReviewError
    from torghut.trading.llm.answer import extract_review
    from torghut.trading.llm.schema import LLMReviewResponse
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torghut.errors import ReviewError
    from torghut.trading.llm.answer import extract_review
    from torghut.trading.llm.schema import LLMReviewResponse

REVIEW = (
    '{"verdict":"approve","confidence":0.86,"adjusted_qty":null,"adjusted_order_type":null,'
    '"limit_price":null,"rationale":"within limits","risk_flags":[]}'
)
MiB = 1024 * 1024


def inputs() -> dict[str, str]:
    # 1 MiB: tool output and prose, then unfinished objects near the end (a failed decode
    # there cost the baseline O(its position) each), then the review.
    prose = ("The limits look fine; checking exposure next. " * 20 + "\n") * 900
    one_mib_noise = prose + '{"k": x\n' * ((MiB - len(prose)) // 8)
    return {
        "1,001 small objects": '{"exit_code":0,"n":1}\n' * 1_001 + REVIEW,
        "array of 2,000 objects": "["
        + ",".join(f'{{"i":{i}}}' for i in range(2_000))
        + "]\n"
        + REVIEW,
        "12K of {": "{" * 12_000 + REVIEW,
        "1 MiB, review at the end": one_mib_noise + REVIEW,
        '1 MiB of {"a":': '{"a":' * (MiB // 5) + REVIEW,
    }


# --- the baseline: the previous forward scan -------------------------------------------------

_DECODER = json.JSONDecoder()


def forward_scan(text: str) -> str:
    found: dict[int, dict[str, Any]] = {}
    budget = {"attempts": 10_000, "chars": 4_000_000}

    def scan(part: str, offset: int) -> None:
        pos = part.find("{")
        while pos != -1 and budget["attempts"] > 0 and budget["chars"] > 0 and len(found) < 1000:
            budget["attempts"] -= 1
            try:
                obj, end = _DECODER.raw_decode(part, pos)
            except json.JSONDecodeError as exc:
                budget["chars"] -= max(exc.pos - pos, 1)
                pos = part.find("{", pos + 1)
                continue
            except (RecursionError, ValueError):
                budget["chars"] -= len(part) - pos
                pos = part.find("{", pos + 1)
                continue
            budget["chars"] -= end - pos
            if isinstance(obj, dict):
                found.setdefault(offset + pos, obj)
            pos = part.find("{", end)

    scan(text, 0)
    if (budget["attempts"] <= 0 or budget["chars"] <= 0) and len(text) > 65_536:
        budget.update(attempts=10_000, chars=4_000_000)
        scan(text[-65_536:], len(text) - 65_536)
    for key in sorted(found, reverse=True):
        try:
            return LLMReviewResponse.model_validate(found[key]).verdict.value
        except ValueError:
            continue
    return "invalid_schema" if found else "invalid_json"


def torghut(text: str) -> str:
    try:
        return extract_review(text)[0].verdict.value
    except ReviewError as exc:
        return exc.code.value


def measure(run: Callable[[str], str], text: str, repeat: int) -> tuple[float, str]:
    best = float("inf")
    result = ""
    for _ in range(repeat):
        started = time.process_time()
        result = run(text)
        best = min(best, time.process_time() - started)
    return best * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-baseline", action="store_true", help="skip forward-scan")
    parser.add_argument("--quick", action="store_true", help="the same as --no-baseline")
    args = parser.parse_args()
    args.no_baseline = args.no_baseline or args.quick
    print(f"{'input':28} {'torghut ms':>10} {'found':>14} {'forward-scan ms':>16} {'found':>14}")
    worst = 0.0
    ok = True
    for name, text in inputs().items():
        ms, found = measure(torghut, text, 3)
        worst = max(worst, ms)
        ok = ok and found == "approve"
        line = f"{name:28} {ms:10.1f} {found:>14}"
        if not args.no_baseline:
            base_ms, base_found = measure(forward_scan, text, 1)
            line += f" {base_ms:16.1f} {base_found:>14}"
        print(line, flush=True)
    target = worst < 50 and ok
    print(
        f"worst {worst:.1f} ms CPU; target (< 50 ms, review found in every input): "
        f"{'met' if target else 'MISSED'}"
    )
    return 0 if target else 1


if __name__ == "__main__":
    sys.exit(main())
