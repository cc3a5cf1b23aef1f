"""What outside input may hold, in one place: signal lines, decision files, query values.

Each limit exists because something downstream breaks past it: PostgreSQL refuses NUL in text
and jsonb, BIGINT stops at 2**63 - 1, `Money` columns hold 8 decimals in 24 digits, Python's
JSON decoder and every recursive walker after it overflow the stack on deep nesting, control
characters in an identifier reach logs and terminals. Checks raise `ValueError` with a short
reason; callers name the field or line."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

INT_MAX = 2**63 - 1  # BIGINT, and SQLite's INTEGER
INT_MIN = -(2**63)
DEPTH_MAX = 16  # far more than a signal or a decision needs
PRICE_MIN = Decimal("0.00000001")  # the scale of the `Money` columns
PRICE_MAX = Decimal("1000000000")  # far below their 16 integer digits, far above any share
RATIONALE_MAX = 4000  # characters of a decision's rationale a reviewer is sent
_FLOAT_MIN, _FLOAT_MAX = float(PRICE_MIN), float(PRICE_MAX)  # `check_price`'s shortcut
_INT_PRICE_MAX = int(PRICE_MAX)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_json_value(value: Any, depth: int = 0) -> None:
    """A decoded JSON value every store and reader can carry: nesting at most `DEPTH_MAX`
    deep, no NUL in any string or key, integers within 64 bits, finite floats. Iterative, so
    a deep value cannot exhaust the stack."""
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if level > DEPTH_MAX:
            raise ValueError(f"nested deeper than {DEPTH_MAX} levels")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("not a finite number")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not INT_MIN <= item <= INT_MAX:
                raise ValueError("integer out of the 64-bit range")
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(str(key), "a key")
                stack.append((child, level + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, level + 1) for child in item)


def _check_text(text: str, what: str = "text") -> None:
    if "\x00" in text:
        raise ValueError(f"{what} holds a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, from a JSON escape like "\ud800"
            raise ValueError(f"{what} is not valid Unicode") from None


def check_identifier(value: Any, longest: int) -> str:
    # Printable ASCII that is not all spaces passes every check below (no NUL, no surrogate,
    # no control or unprintable character): the usual symbol or timeframe, taken in one look.
    if (
        type(value) is str
        and len(value) <= longest
        and value.isascii()
        and value.isprintable()
        and not value.isspace()
        and value
    ):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if not value.strip():
        raise ValueError("must not be blank")
    if len(value) > longest:
        raise ValueError(f"at most {longest} characters")
    _check_text(value, "it")
    if _CONTROL.search(value):
        # A NUL stops PostgreSQL; other control characters would reach logs and terminals.
        raise ValueError("holds a control character")
    if not value.isprintable():
        # Format characters (a right-to-left override), unassigned code points, line breaks:
        # an identifier shown to an operator must read as what it is.
        raise ValueError("holds a character that is not printable")
    return value


def check_price(value: Any) -> Decimal:
    """A positive price the `Money` columns hold exactly enough: a smaller one would round to
    0 (and stall every cycle that marks it), a larger one would overflow the column."""
    # The usual price, taken in one look: a float strictly inside the band as floats has a
    # shortest text strictly inside it as decimals (rounding is monotonic), and an int in it is
    # its own text: both pass every check below, giving the same Decimal.
    kind = type(value)
    if kind is float and _FLOAT_MIN < value < _FLOAT_MAX:
        return Decimal(repr(value))
    if kind is int and 0 < value <= _INT_PRICE_MAX:
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("expected a number")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("expected a number") from None
    if not price.is_finite() or price <= 0:
        raise ValueError("expected a positive number")
    if not PRICE_MIN <= price <= PRICE_MAX:
        raise ValueError(f"expected a price between {PRICE_MIN} and {PRICE_MAX}")
    return price


def check_reviewable(decision: Any, *, max_shares: Decimal) -> None:
    """A decision a reviewer may be sent, checked as the pipeline's own decisions are bounded
    (`torghut llm review` takes them from a file): identifiers without control characters,
    prices the database can hold, a quantity within the share cap, a bounded rationale and
    plain `params`. Raises `ValueError("field: why")`."""
    checks: list[tuple[str, Any]] = [
        ("strategy_id", lambda: check_identifier(decision.strategy_id, 128)),
        ("symbol", lambda: check_identifier(decision.symbol, 32)),
        ("timeframe", lambda: check_identifier(decision.timeframe, 16)),
        ("qty", lambda: _check_qty(decision.qty, max_shares)),
        ("limit_price", lambda: decision.limit_price is None or check_price(decision.limit_price)),
        ("stop_price", lambda: decision.stop_price is None or check_price(decision.stop_price)),
        ("rationale", lambda: _check_rationale(decision.rationale)),
        ("params", lambda: check_json_value(decision.params)),
        (
            "params.price",
            lambda: "price" not in decision.params or check_price(decision.params["price"]),
        ),
    ]
    for name, check in checks:
        try:
            check()
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


def _check_qty(qty: Decimal, max_shares: Decimal) -> None:
    if not qty.is_finite() or qty <= 0:
        raise ValueError("expected a positive number")
    if qty > max_shares:
        raise ValueError(f"more than {max_shares} shares (TRADING_MAX_SHARES_PER_ORDER)")


def _check_rationale(text: str | None) -> None:
    if text is None:
        return
    if len(text) > RATIONALE_MAX:
        raise ValueError(f"longer than {RATIONALE_MAX} characters")
    _check_text(text)
