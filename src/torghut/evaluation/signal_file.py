"""A JSON Lines signal file read whole: the price source of `llm eval` and the bar history of
`llm review`."""

from __future__ import annotations

from pathlib import Path

from torghut.domain import Signal
from torghut.errors import InputError


def sqlite_path(dsn: str) -> Path | None:
    """The file of a SQLite DSN (None for other databases and in-memory ones): opening a
    missing one would create it, which a read-only command must not do."""
    if not dsn.startswith("sqlite"):
        return None
    path = dsn.split("///", 1)[-1].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def read_signal_file(path: Path) -> list[Signal]:
    """Every valid signal of a JSON Lines file (bad lines skipped, as replay does)."""
    from torghut.trading.signals import parse_signal_line

    signals: list[Signal] = []
    try:
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                    if line.strip():
                        signals.append(parse_signal_line(line, lineno))
                except (UnicodeDecodeError, InputError):
                    continue
    except OSError as exc:
        raise InputError(f"--signals: cannot read {path}: {exc.strerror}") from None
    signals.sort(key=lambda s: (s.event_ts, s.symbol, s.seq))
    return signals
