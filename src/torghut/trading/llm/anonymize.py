"""What the reviewer is sent, with the symbols and dates a model could remember taken out.

An evaluation on historical data rewards a model that remembers what happened next to AAPL on
2025-03-03. With `--anonymize`, every symbol in the request becomes a stable token (the same
symbol, the same token, in every request and every run) and every date-time moves by a fixed
whole number of weeks, so weekdays, clock times and the gaps between them stay true. Prices,
returns and indicators are left as they are (they are what the review is about); a model could
still recognise a price level, which is why the README says not to trust an evaluation of a
model that may know the period.

Pure: a JSON value in, a JSON value out. The caller keeps the real request for the audit row.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

# 2087 weeks (about 40 years) forward: far past any model's training data, same weekday.
DATE_SHIFT = timedelta(weeks=2087)
_SALT = "torghut-anonymize-v1"
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?"
)


def symbol_token(symbol: str) -> str:
    digest = hashlib.sha256(f"{_SALT}:{symbol.upper()}".encode()).hexdigest()
    return f"SYM{digest[:6].upper()}"


def _shift_match(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    shifted = (moment + DATE_SHIFT).isoformat()
    if len(text) == 10:
        return shifted[:10]  # a date stays a date
    return shifted.replace("+00:00", "Z") if text.endswith("Z") else shifted


def _symbols(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "symbol" and isinstance(item, str) and item.strip():
                found.add(item.strip())
            else:
                _symbols(item, found)
    elif isinstance(value, list):
        for item in value:
            _symbols(item, found)


def anonymize(request: dict[str, Any]) -> dict[str, Any]:
    """`request` with its symbols tokenised (every `symbol` value, and those symbols wherever
    they appear as a word in other text) and its date-times shifted by `DATE_SHIFT`."""
    symbols: set[str] = set()
    _symbols(request, symbols)
    # Longest first, so BRK.B is not half-replaced by BRK.
    pattern = (
        re.compile(
            r"(?<![A-Za-z0-9])("
            + "|".join(re.escape(s) for s in sorted(symbols, key=len, reverse=True))
            + r")(?![A-Za-z0-9])"
        )
        if symbols
        else None
    )

    def text(value: str) -> str:
        value = _ISO.sub(_shift_match, value)
        if pattern is not None:
            value = pattern.sub(lambda m: symbol_token(m.group(1)), value)
        return value

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, str):
            return text(value)
        return value

    out = walk(request)
    assert isinstance(out, dict)
    return out
