"""`llm eval`'s price source when there is no signal file: the bars in ClickHouse.

One query over HTTP for the reviewed symbols and the time the evaluation needs (from a little
before the first decision, for its entry price, to the last decision plus the longest horizon):
the close of `ta_microbars`, one row per symbol and time (duplicates of a ReplacingMergeTree
before its merge are grouped away). Every value is a query parameter.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from torghut.domain import Signal, as_utc
from torghut.errors import TorghutError, redact
from torghut.evaluation.prices import PricePaths

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENTRY_LOOKBACK = timedelta(hours=1)


class PriceSourceError(TorghutError):
    """The price source could not be read (unreachable, timeout, an error answer)."""


def build_prices_query(database: str = "torghut") -> str:
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database must be a plain identifier, got {database!r}")
    return f"""\
SELECT symbol, event_ts, any(c) AS price
FROM {database}.ta_microbars
WHERE symbol IN {{symbols:Array(String)}}
  AND event_ts >= {{start:DateTime64(6, 'UTC')}}
  AND event_ts <= {{end:DateTime64(6, 'UTC')}}
GROUP BY symbol, event_ts
ORDER BY symbol, event_ts
SETTINGS date_time_output_format = 'iso'
FORMAT JSONEachRow
"""


def _quoted(text: str) -> str:
    """A string literal inside an Array(String) query parameter."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ts(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_prices(text: str) -> PricePaths:
    """JSONEachRow lines in; rows without a usable time or a positive price are skipped."""
    signals: list[Signal] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            price = float(row["price"])
            if not math.isfinite(price) or price <= 0:
                continue
            moment = datetime.fromisoformat(str(row["event_ts"]).replace("Z", "+00:00"))
            signals.append(
                Signal(
                    event_ts=moment,
                    symbol=str(row["symbol"]),
                    timeframe="bar",
                    price=str(row["price"]),
                )
            )
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
    return PricePaths.from_signals(signals)


@dataclass(frozen=True)
class ClickHouseAccess:
    url: str
    username: str = "default"
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0
    database: str = "torghut"


async def clickhouse_prices(
    access: ClickHouseAccess, symbols: Sequence[str], start: datetime, end: datetime
) -> PricePaths:
    if not symbols:
        return PricePaths()
    url, username, password = access.url, access.username, access.password
    timeout_seconds, database = access.timeout_seconds, access.database
    params = {
        "param_symbols": "[" + ",".join(_quoted(s) for s in symbols) + "]",
        "param_start": _ts(start - ENTRY_LOOKBACK),
        "param_end": _ts(end),
        "max_execution_time": str(max(1, math.ceil(timeout_seconds))),
    }
    headers = {"X-ClickHouse-User": username}
    if password:
        headers["X-ClickHouse-Key"] = password
    secrets = [password] if password else []
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds)) as client:
            async with asyncio.timeout(timeout_seconds):
                response = await client.post(
                    f"{url.rstrip('/')}/",
                    params=params,
                    content=build_prices_query(database).encode(),
                    headers=headers,
                )
    except (TimeoutError, httpx.TimeoutException):
        raise PriceSourceError(f"clickhouse query timed out after {timeout_seconds:g}s") from None
    except httpx.HTTPError as exc:
        raise PriceSourceError(
            f"clickhouse unreachable: {type(exc).__name__}: {redact(str(exc), secrets)}"
        ) from None
    if response.status_code != 200:
        detail = redact(response.text.strip(), secrets)
        raise PriceSourceError(f"clickhouse answered {response.status_code}: {detail}")
    return await asyncio.to_thread(parse_prices, response.text)
