"""When an order may leave: the signal is fresh, and the exchange is in session.

Pure decisions (a time in, a reason or None out) over an exchange calendar. The calendar comes
from `exchange_calendars` (a maintained library of exchange holidays and early closes), imported
on first use only: it pulls in pandas, which costs start-up time every command would pay.
Each session day's hours are computed once and cached.

The extended session (`TRADING_EXTENDED_HOURS=true`) is taken as Alpaca trades it: from 04:00
New York time, 5.5 hours before the regular open, to 4 hours after the regular close (20:00,
or 17:00 on an early-close day), on the exchange's session days only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from torghut.domain import as_utc

SIGNAL_STALE = "signal_stale"
MARKET_CLOSED = "market_closed"

ALWAYS_OPEN = "always"
_PRE_MARKET = timedelta(hours=5, minutes=30)
_AFTER_HOURS = timedelta(hours=4)


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
        # exchange_calendars 4.13 trips pandas 3.1's deprecation warnings inside its own code;
        # nothing of ours to fix, and they would flood the logs once per day computed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calendar = self._load()
            label = day.isoformat()
            if not calendar.is_session(label):
                return None
            opens: datetime = calendar.session_open(label).to_pydatetime()
            closes: datetime = calendar.session_close(label).to_pydatetime()
        if self.extended_hours:
            opens, closes = opens - _PRE_MARKET, closes + _AFTER_HOURS
        return as_utc(opens), as_utc(closes)

    def loaded(self) -> bool:
        """Whether `is_open` can answer without loading the calendar (a blocking import and
        build of about 0.4 s: load it off the event loop first, `load()` in a thread)."""
        return self.exchange == ALWAYS_OPEN or self._calendar is not None

    def load(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # see `_compute`
            self._load()

    def _load(self) -> Any:
        if self._calendar is None:
            calendar = _CALENDARS.get(self.exchange)
            if calendar is None:
                import exchange_calendars  # type: ignore[import-untyped]  # lazily: see above

                calendar = exchange_calendars.get_calendar(self.exchange)
                _CALENDARS[self.exchange] = calendar
            self._calendar = calendar
        return self._calendar


# Built once per process and exchange (about 0.1 s each, after the import): read-only after.
_CALENDARS: dict[str, Any] = {}


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
    then the session (CONTRACT §8)."""
    if (as_utc(now) - as_utc(signal_ts)).total_seconds() > max_age_seconds:
        return SIGNAL_STALE
    if not calendar.is_open(now):
        return MARKET_CLOSED
    return None
