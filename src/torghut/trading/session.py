"""When an order may leave: the signal is fresh, and the exchange is in session.

Pure decisions (a time in, a reason or None out) over an exchange calendar. The calendar is
`exchange_calendars`' (a maintained library of exchange holidays and early closes). Importing it
pulls in pandas and building a calendar costs about half a second, once per process: every
`replay` paid it. So the sessions it gives for the exchanges Torghut offers are kept in a table
(`torghut/data/exchange_sessions.jsonl`: the holidays and early closes of each year, 1990-2060),
read in a millisecond; tests/unit/test_session_table.py checks the table against the library
day by day, regular and extended hours. A day the table cannot answer exactly as the library
would (outside the range the library's own calendar covers today, or outside the table) is
asked of the library itself, imported then. Each session day's hours are computed once and
cached.

The extended session (`TRADING_EXTENDED_HOURS=true`) is taken as Alpaca trades it: from 04:00
New York time, 5.5 hours before the regular open, to 4 hours after the regular close (20:00,
or 17:00 on an early-close day), on the exchange's session days only.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from torghut.domain import as_utc

SIGNAL_STALE = "signal_stale"
MARKET_CLOSED = "market_closed"

log = logging.getLogger(__name__)

ALWAYS_OPEN = "always"
# How far the extended session reaches before the regular open and after the close.
PRE_MARKET = timedelta(hours=5, minutes=30)
AFTER_HOURS = timedelta(hours=4)


@dataclass
class SessionCalendar:
    """Whether a UTC instant falls inside a trading session of `exchange`."""

    exchange: str = "XNYS"
    extended_hours: bool = False
    _calendar: Any = field(default=None, init=False, repr=False)
    _hours: dict[date, tuple[datetime, datetime] | None] = field(
        default_factory=dict, init=False, repr=False
    )

    def is_open(self, at: datetime) -> bool:
        if self.exchange == ALWAYS_OPEN:
            return True
        at = as_utc(at)
        # The New York session day of a UTC instant is that date or the one before (a session
        # never spans midnight UTC by more than the after-hours tail): check both.
        for day in (at.date(), at.date() - timedelta(days=1)):
            hours = self._session(day)
            if hours is not None and hours[0] <= at < hours[1]:
                return True
        return False

    def _session(self, day: date) -> tuple[datetime, datetime] | None:
        if day not in self._hours:
            self._hours[day] = self._compute(day)
        return self._hours[day]

    def _compute(self, day: date) -> tuple[datetime, datetime] | None:
        hours = self.regular_hours(day)
        if hours is None:
            return None
        opens, closes = hours
        if self.extended_hours:
            opens, closes = opens - PRE_MARKET, closes + AFTER_HOURS
        return opens, closes

    def regular_hours(self, day: date) -> tuple[datetime, datetime] | None:
        """The regular session of `day` (a New York date) in UTC, early closes included;
        None on a day without one (a weekend, a holiday), and for the `always` calendar."""
        if self.exchange == ALWAYS_OPEN:
            return None
        table = session_table(self.exchange)
        if table is not None and table.answers(day):
            hours = table.hours(day)
        else:
            hours = _library_hours(self._load(), day)
        if hours is None:
            return None
        return as_utc(hours[0]), as_utc(hours[1])

    def loaded(self) -> bool:
        """Whether `is_open` can answer without loading anything slow (the library is a
        blocking import and build of about half a second: `load()` it in a thread first)."""
        return (
            self.exchange == ALWAYS_OPEN
            or self._calendar is not None
            or _TABLES.get(self.exchange) is not None
        )

    def load(self) -> None:
        """Load what `is_open` needs: the session table, or for an exchange without one (or
        whose table cannot cover today's range), the library's calendar."""
        if self.exchange == ALWAYS_OPEN:
            return
        if session_table(self.exchange) is None:
            self._load()

    def _load(self) -> Any:
        if self._calendar is None:
            self._calendar = library_calendar(self.exchange)
        return self._calendar


def library_calendar(exchange: str) -> Any:
    """`exchange_calendars`' calendar of `exchange`, built once per process."""
    calendar = _CALENDARS.get(exchange)
    if calendar is None:
        # exchange_calendars 4.13 trips pandas 3.1's deprecation warnings inside its own code;
        # nothing of ours to fix, and they would flood the logs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import exchange_calendars  # type: ignore[import-untyped]  # lazily: see above

            calendar = exchange_calendars.get_calendar(exchange)
        _CALENDARS[exchange] = calendar
    return calendar


def _library_hours(calendar: Any, day: date) -> tuple[datetime, datetime] | None:
    """A day's session open and close from the library (None: not a session day); raises
    what the library raises for a day outside its calendar."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see `library_calendar`
        label = day.isoformat()
        if not calendar.is_session(label):
            return None
        opens: datetime = calendar.session_open(label).to_pydatetime()
        closes: datetime = calendar.session_close(label).to_pydatetime()
    return opens, closes


# Built once per process and exchange (about 0.1 s each, after the import): read-only after.
_CALENDARS: dict[str, Any] = {}


# --- the session table ---------------------------------------------------------------------

SESSION_TABLE_FILE = "exchange_sessions.jsonl"
# Every session of the table's exchanges opens at 09:30 and closes at 16:00 New York time,
# but on its early-close days (the table checks both against the library).
_TABLE_ZONE = "America/New_York"
_TABLE_OPEN = time(9, 30)
_TABLE_CLOSE = time(16, 0)


@dataclass(frozen=True, slots=True)
class SessionTable:
    """One exchange's sessions over whole years: every weekday but `holidays` is a session,
    from `_TABLE_OPEN` to `_TABLE_CLOSE` or its early close. `first_session` and
    `last_session` are those of the library's own calendar as it would be built now (it
    covers 20 years back to one year ahead of today, and raises outside): a day outside them,
    the table leaves to the library."""

    first_year: int
    last_year: int
    holidays: frozenset[date]
    early_closes: dict[date, time]
    first_session: date
    last_session: date
    zone: tzinfo = field(default_factory=lambda: ZoneInfo(_TABLE_ZONE))

    def answers(self, day: date) -> bool:
        return self.first_session <= day <= self.last_session

    def is_session(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def hours(self, day: date) -> tuple[datetime, datetime] | None:
        if not self.is_session(day):
            return None
        closes = self.early_closes.get(day, _TABLE_CLOSE)
        return (
            datetime.combine(day, _TABLE_OPEN, self.zone).astimezone(UTC),
            datetime.combine(day, closes, self.zone).astimezone(UTC),
        )


def read_session_tables(text: str) -> dict[str, tuple[int, int, set[date], dict[date, time]]]:
    """The tables of `exchange_sessions.jsonl`: after a header (no `year`), one record per
    year and group of exchanges sharing it: `{"exchanges": [...], "year": 2025, "holidays":
    ["0101", ...], "early_closes": {"1128": "1300", ...}}` (weekday holidays and early closes,
    New York time). Returns, by exchange, (first year, last year, holidays, early closes);
    an exchange whose years are not contiguous gets no table."""
    tables: dict[str, tuple[int, int, set[date], dict[date, time]]] = {}
    years: dict[str, set[int]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "year" not in record:
            continue  # the header
        year = int(record["year"])
        holidays = {date(year, int(d[:2]), int(d[2:])) for d in record["holidays"]}
        closes = {
            date(year, int(d[:2]), int(d[2:])): time(int(t[:2]), int(t[2:]))
            for d, t in record["early_closes"].items()
        }
        for name in record["exchanges"]:
            first, last, known, early = tables.get(name, (year, year, set(), {}))
            known |= holidays
            early.update(closes)
            tables[name] = (min(first, year), max(last, year), known, early)
            years.setdefault(name, set()).add(year)
    return {
        name: table for name, table in tables.items() if len(years[name]) == table[1] - table[0] + 1
    }


def library_bounds(table: SessionTable | None, today: date) -> tuple[date, date] | None:
    """The first and last sessions of the calendar `exchange_calendars` builds on `today`:
    from 20 years before it to one year after (its defaults, for exchanges without bounds of
    their own), to the sessions at or inside those dates. None when the table does not
    cover both ends."""
    if table is None:
        return None
    start, end = _years_later(today, -20), _years_later(today, 1)
    if not (table.first_year <= start.year and end.year <= table.last_year):
        return None
    first, last = start, end
    while not table.is_session(first):
        first += timedelta(days=1)
    while not table.is_session(last):
        last -= timedelta(days=1)
    return first, last


def _years_later(day: date, years: int) -> date:
    """`day` moved by whole years, as pandas' `DateOffset(years=...)` moves it: a 29 February
    lands on the 28th."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def session_table(exchange: str) -> SessionTable | None:
    """`exchange`'s session table, read once per process; None when it has none, or when the
    table does not cover the range the library's calendar covers today."""
    if exchange not in _TABLES:
        with _TABLES_LOCK:
            if exchange not in _TABLES:
                _TABLES.update(_build_tables())
                _TABLES.setdefault(exchange, None)
    return _TABLES[exchange]


def _build_tables() -> dict[str, SessionTable | None]:
    try:
        text = (resources.files("torghut") / "data" / SESSION_TABLE_FILE).read_text("utf-8")
        tables = read_session_tables(text)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no table (an install without it): the library answers, as it always did
    # `exchange_calendars` takes today's date when it is imported; this stands for that
    # moment (a process that runs past midnight keeps the range it started with, as before).
    today = datetime.now().date()
    zone = ZoneInfo(_TABLE_ZONE)
    built: dict[str, SessionTable | None] = {}
    for name, (first_year, last_year, holidays, closes) in tables.items():
        table = SessionTable(
            first_year, last_year, frozenset(holidays), closes, date.min, date.min, zone
        )
        bounds = library_bounds(table, today)
        built[name] = (
            None
            if bounds is None
            else SessionTable(first_year, last_year, table.holidays, closes, *bounds, zone)
        )
    return built


# Read once per process, by exchange: read-only after.
_TABLES: dict[str, SessionTable | None] = {}
_TABLES_LOCK = threading.Lock()


def admission(
    signal_ts: datetime,
    now: datetime,
    *,
    max_age_seconds: float,
    calendar: SessionCalendar,
) -> str | None:
    """Why an order for a signal of `signal_ts` may not leave at `now`, or None.

    `now` is the wall clock in `serve` and the signal's own time in `replay` (where no signal
    is ever stale and the session is the one the signal was recorded in). Staleness first,
    then the session (CONTRACT §8). A signal dated more than the same age ahead of `now` is
    no fresher than one that far behind it: a clock that far off is a bad tick, and in
    `serve` its time would otherwise pass every check and trade at once. A time the exchange
    calendar cannot place (outside the years it knows: a bad tick's 2099, say) is no
    session: closed, never open by default."""
    if abs((as_utc(now) - as_utc(signal_ts)).total_seconds()) > max_age_seconds:
        return SIGNAL_STALE
    if not _open_or_unknown_closed(calendar, now):
        return MARKET_CLOSED
    return None


def _open_or_unknown_closed(calendar: SessionCalendar, now: datetime) -> bool:
    try:
        return calendar.is_open(now)
    except ValueError as exc:
        # exchange_calendars' DateOutOfBounds (a ValueError) for a day outside its calendar.
        # Raised into the pipeline, it failed the whole batch, and the batch was read again
        # and failed again: one bad timestamp stopped trading (a replay ended in a traceback).
        day = (calendar.exchange, as_utc(now).date())
        if day not in _UNPLACED_DAYS:  # once a day: a file of such signals is one line each
            if len(_UNPLACED_DAYS) >= 1000:
                _UNPLACED_DAYS.clear()
            _UNPLACED_DAYS.add(day)
            log.warning(
                "no %s session known at %s (%s): treated as closed",
                calendar.exchange,
                as_utc(now).isoformat(),
                exc,
            )
        return False


# The (exchange, UTC day) pairs already warned about by `_open_or_unknown_closed`.
_UNPLACED_DAYS: set[tuple[str, date]] = set()
