"""The session table (`torghut/data/exchange_sessions.jsonl`) answers as `exchange_calendars`
does (issue 16: the library cost half a second per process). Day by day over the years the
table holds, holidays and early closes included, in regular and extended hours; and the days
the table leaves to the library are exactly those the library's own calendar does not cover.

After an upgrade of exchange_calendars changes a session, rewrite the table with
`TORGHUT_WRITE_SESSION_TABLE=1 pytest tests/unit/test_session_table.py`, and review the diff."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from torghut.trading import session
from torghut.trading.session import (
    SESSION_TABLE_FILE,
    SessionCalendar,
    library_bounds,
    read_session_tables,
    session_table,
)

EXCHANGES = ("XNYS", "XNAS")  # what TRADING_CALENDAR offers, besides "always"
FIRST_YEAR, LAST_YEAR = 1990, 2060


def _calendar(exchange: str, start: str, end: str) -> Any:
    import exchange_calendars  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exchange_calendars.get_calendar(exchange, start=start, end=end)


def _library_table(exchange: str) -> dict[int, tuple[list[date], dict[date, time]]]:
    """Each year's weekday holidays and early closes, as the library gives them."""
    calendar = _calendar(exchange, f"{FIRST_YEAR}-01-01", f"{LAST_YEAR}-12-31")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schedule = calendar.schedule
        opens = schedule["open"].dt.tz_convert("America/New_York")
        closes = schedule["close"].dt.tz_convert("America/New_York")
    sessions = {label.date() for label in schedule.index}
    assert {t.time() for t in opens} == {time(9, 30)}  # what the table takes for granted
    table: dict[int, tuple[list[date], dict[date, time]]] = {
        year: ([], {}) for year in range(FIRST_YEAR, LAST_YEAR + 1)
    }
    day = date(FIRST_YEAR, 1, 1)
    while day.year <= LAST_YEAR:
        if day.weekday() < 5 and day not in sessions:
            table[day.year][0].append(day)
        day += timedelta(days=1)
    for label, close in closes.items():
        if close.time() != time(16, 0):
            table[label.year][1][label.date()] = close.time()
    return table


def _render() -> str:
    header = {
        "about": "Exchange sessions as exchange_calendars gives them; written and checked by "
        "tests/unit/test_session_table.py. A record is a year of the exchanges that share it: "
        "its weekday holidays (MMDD) and early closes (MMDD: HHMM). Every other weekday is a "
        "session from 09:30 to 16:00 New York time."
    }
    lines = [json.dumps(header)]
    tables = {exchange: _library_table(exchange) for exchange in EXCHANGES}
    groups: list[tuple[list[str], Any]] = []
    for exchange, table in tables.items():
        for names, shared in groups:
            if shared == table:
                names.append(exchange)
                break
        else:
            groups.append(([exchange], table))
    for names, table in groups:
        for year, (holidays, closes) in sorted(table.items()):
            record = {
                "exchanges": names,
                "year": year,
                "holidays": [f"{d:%m%d}" for d in holidays],
                "early_closes": {f"{d:%m%d}": f"{t:%H%M}" for d, t in sorted(closes.items())},
            }
            lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def test_the_table_is_what_the_library_gives() -> None:
    path = Path(str(resources.files("torghut") / "data" / SESSION_TABLE_FILE))
    expected = _render()
    if os.environ.get("TORGHUT_WRITE_SESSION_TABLE") == "1":
        path.write_text(expected, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == expected
    tables = read_session_tables(expected)
    assert sorted(tables) == sorted(EXCHANGES)
    for exchange in EXCHANGES:
        first, last, holidays, closes = tables[exchange]
        library = _library_table(exchange)
        assert (first, last) == (FIRST_YEAR, LAST_YEAR)
        assert sorted(holidays) == sorted(d for h, _ in library.values() for d in h)
        assert closes == {d: t for _, c in library.values() for d, t in c.items()}


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _library_hours(calendar: Any, day: date, extended: bool) -> tuple[datetime, datetime] | None:
    """The hours `SessionCalendar` took from the library before the table (issue 16)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        label = day.isoformat()
        if not calendar.is_session(label):
            return None
        opens = calendar.session_open(label).to_pydatetime()
        closes = calendar.session_close(label).to_pydatetime()
    if extended:
        opens, closes = opens - timedelta(hours=5, minutes=30), closes + timedelta(hours=4)
    return opens.astimezone(UTC), closes.astimezone(UTC)


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("extended", [False, True])
def test_every_day_the_table_answers_is_answered_as_the_library_does(
    exchange: str, extended: bool
) -> None:
    """Over the library's whole default range (20 years back, one ahead): the same hours,
    to the microsecond and the time zone, or None alike."""
    table = session_table(exchange)
    assert table is not None
    calendar = session.library_calendar(exchange)
    assert (table.first_session, table.last_session) == (
        calendar.first_session.date(),
        calendar.last_session.date(),
    )
    fast = SessionCalendar(exchange, extended_hours=extended)
    for day in _days(table.first_session, table.last_session):
        expected = _library_hours(calendar, day, extended)
        got = fast._compute(day)
        assert got == expected, day
        if got is not None and expected is not None:
            assert [t.tzinfo for t in got] == [t.tzinfo for t in expected] == [UTC, UTC]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_past_years_and_future_years_answer_as_the_library(exchange: str) -> None:
    """The years the library's default range does not reach today, against a library
    calendar built over them."""
    table = session_table(exchange)
    assert table is not None
    tables = read_session_tables(
        (resources.files("torghut") / "data" / SESSION_TABLE_FILE).read_text("utf-8")
    )
    first, last, holidays, closes = tables[exchange]
    wide = session.SessionTable(first, last, frozenset(holidays), closes, date.min, date.max)
    calendar = _calendar(exchange, f"{FIRST_YEAR}-01-01", f"{LAST_YEAR}-12-31")
    for day in _days(calendar.first_session.date(), calendar.last_session.date()):
        assert wide.hours(day) == _library_hours(calendar, day, False), day


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_days_outside_the_library_range_go_to_the_library(exchange: str) -> None:
    """The library raises for a day outside its calendar: so does `is_open` there, as
    before."""
    table = session_table(exchange)
    assert table is not None
    calendar = SessionCalendar(exchange)
    before = datetime.combine(table.first_session - timedelta(days=3), time(15), UTC)
    after = datetime.combine(table.last_session + timedelta(days=3), time(15), UTC)
    from exchange_calendars.errors import DateOutOfBounds  # type: ignore[import-untyped]

    for at in (before, after):
        with pytest.raises(DateOutOfBounds):
            calendar.is_open(at)
    assert calendar._calendar is not None  # the library answered


@pytest.mark.parametrize(
    "today",
    [date(2026, 12, 5), date(2024, 2, 29), date(2023, 3, 1), date(2031, 7, 4), date(2039, 12, 31)],
)
def test_the_library_range_is_computed_as_the_library_does(today: date) -> None:
    """Its default range (20 years back, one ahead of today, by pandas' `DateOffset`), to
    the sessions inside it, as a calendar built on that range has them."""
    import pandas as pd

    start = (pd.Timestamp(today) - pd.DateOffset(years=20)).date()
    end = (pd.Timestamp(today) + pd.DateOffset(years=1)).date()
    calendar = _calendar("XNYS", start.isoformat(), end.isoformat())
    expected = (calendar.first_session.date(), calendar.last_session.date())
    assert library_bounds(session_table("XNYS"), today) == expected


@pytest.mark.parametrize("today", [date(2070, 1, 1), date(2009, 6, 1)])
def test_a_range_past_the_table_is_left_to_the_library(today: date) -> None:
    assert library_bounds(session_table("XNYS"), today) is None


def test_the_table_is_read_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(exchange: str) -> Any:
        raise AssertionError("the library was loaded")

    monkeypatch.setattr(session, "library_calendar", refuse)
    calendar = SessionCalendar("XNYS", extended_hours=True)
    calendar.load()
    assert calendar.loaded()
    assert calendar.is_open(datetime(2025, 11, 28, 17, 30, tzinfo=UTC))
    assert not calendar.is_open(datetime(2025, 12, 25, 15, tzinfo=UTC))


def test_a_table_with_a_missing_year_is_not_used() -> None:
    text = _render().splitlines()
    assert read_session_tables("\n".join(text))["XNYS"][:2] == (FIRST_YEAR, LAST_YEAR)
    gap = [line for line in text if '"year": 2000,' not in line]
    assert "XNYS" not in read_session_tables("\n".join(gap))
