"""SQLAlchemy 2 tables. Column names of `trade_decisions`, `executions` and
`llm_decision_reviews` are CONTRACT §6; the rest is ours."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from torghut.db.binding import has_column_form
from torghut.db.jsontext import JSONText, serializer_passes
from torghut.domain import as_utc, utcnow

_BindProcessor = Callable[[Any], Any]


def _or_none(convert: _BindProcessor) -> _BindProcessor:
    return lambda value: None if value is None else convert(value)


# Stable constraint names, so that Alembic can alter them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite would otherwise hand back naive datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def bind_processor(self, dialect: Dialect) -> _BindProcessor | None:
        # Every row of every write binds two or three of these: one function instead of this
        # decorator's call chain, and on SQLite (default storage format) the text SQLite's
        # DATETIME would make, from one C call instead of a dict and a %-format per value.
        inner = self.impl_instance.bind_processor(dialect)
        if inner is None:
            return _or_none(as_utc)
        if isinstance(self.impl_instance, SQLITE_DATETIME) and (
            self.impl_instance._storage_format == SQLITE_DATETIME._storage_format
        ):
            # The last value and its text, as one tuple (read and replaced atomically: the
            # database's threads share this function): a batch's rows share their `now`.
            last: list[tuple[Any, Any]] = [(None, None)]

            def sqlite_text(value: Any) -> Any:
                if value is None:
                    return None
                seen, text = last[0]
                if seen is value:
                    return text
                if type(value) is datetime:
                    # "YYYY-MM-DD HH:MM:SS.ffffff" (the offset sliced off): SQLite's format.
                    text = as_utc(value).isoformat(" ", "microseconds")[:26]
                else:
                    text = inner(as_utc(value))
                last[0] = (value, text)
                return text

            return sqlite_text

        def process(value: Any) -> Any:
            return None if value is None else inner(as_utc(value))

        return process


# --- No NUL reaches a text or JSON column ---------------------------------------------------
# PostgreSQL refuses U+0000 in text and in jsonb, and no driver can encode a lone surrogate:
# either one in a row fails the whole transaction, and with it an audit row (issue 13: a NUL in
# a gateway's error text lost the review row). Peer text is made safe where it is quoted
# (`errors.redact`), but the guard belongs here too, on every write of every text and JSON
# column, whatever path the value took. A TypeDecorator does it at bind time for ORM and Core
# statements alike (executemany included), per column, with no global event hook to forget;
# it replaces rather than refuses, because refusing would lose the row it is there to keep.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value


# In JSON text made with ensure_ascii=False, a NUL shows as its escape and a lone surrogate
# as itself (a literal backslash before "u0000" also matches: that only costs the slow path).
_UNSTORABLE_IN_JSON = re.compile("\\\\u0000|[\ud800-\udfff]")
_PLAIN_SCALARS = frozenset({str, int, bool, float, type(None)})


def is_plain_json(value: Any) -> bool:
    """Only dicts with str keys, lists, tuples, str, int, bool, float and None, exactly (no
    subclass): data on which `json.dumps` and `json_dumps(storable_json(...))` agree, but for
    non-finite floats (refused by `_plain_json_text`'s `allow_nan=False`)."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (
                type(item) not in _PLAIN_SCALARS and not is_plain_json(item)
            ):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _PLAIN_SCALARS and not is_plain_json(item):
                return False
        return True
    return False


def _plain_json_text(value: Any) -> str | None:
    """The JSON text `json_dumps(storable_json(value))` would make, when `value` is plain JSON
    data with no NUL, lone surrogate or non-finite float in it; None otherwise (the caller
    takes the general path)."""
    if not is_plain_json(value):
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity: json_dumps writes them as strings
        return None
    if text.isascii():  # no surrogate possible: only a NUL's escape to look for
        return None if "\\u0000" in text else text
    return None if _UNSTORABLE_IN_JSON.search(text) else text


def storable_json(value: Any) -> Any:
    """JSON data with `storable_text` applied to every string, dict keys included."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {
            storable_json(k) if isinstance(k, str) else k: storable_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


def _storable_text_or_none(value: Any) -> Any:
    # storable_text inlined: this runs for every text value of every row written. Nearly all
    # of them are ASCII, which CPython knows without a scan (`isascii` reads a flag) and which
    # holds no surrogate: a NUL is then the only thing to look for, and `in` finds it several
    # times faster than the pattern.
    if value is None:
        return value
    if type(value) is str and value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if not _UNSTORABLE.search(value):
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def _storable_text_column(values: Sequence[Any]) -> Iterable[Any]:
    # `_storable_text_or_none` over a whole column (`binding.column_form`): text columns are
    # nearly always ASCII without a NUL, which the joined column shows with two C-level calls
    # (the join refuses a value that is not text: that column takes the value-by-value way).
    try:
        joined = "".join(filter(None, values))
    except TypeError:
        return map(_storable_text_or_none, values)
    if joined.isascii() and "\x00" not in joined:
        return values
    return map(_storable_text_or_none, values)


has_column_form(_storable_text_or_none, _storable_text_column)


def _safe_text_processor(inner: _BindProcessor | None) -> _BindProcessor:
    if inner is None:
        return _storable_text_or_none
    return lambda value: inner(_storable_text_or_none(value))


class SafeString(TypeDecorator[str]):
    """VARCHAR that never binds a NUL or a lone surrogate."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value if value is None else storable_text(value)

    def bind_processor(self, dialect: Dialect) -> _BindProcessor | None:
        # `process_bind_param` in one function (the decorator's chain costs more than it).
        return _safe_text_processor(self.impl_instance.bind_processor(dialect))


class SafeText(TypeDecorator[str]):
    """TEXT that never binds a NUL or a lone surrogate."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value if value is None else storable_text(value)

    def bind_processor(self, dialect: Dialect) -> _BindProcessor | None:
        return _safe_text_processor(self.impl_instance.bind_processor(dialect))


class SafeJSON(TypeDecorator[Any]):
    """JSONB on PostgreSQL (indexable, compact), JSON text elsewhere; no string in the value
    (keys included) binds a NUL or a lone surrogate. `none_as_null`: Python's None is SQL
    NULL (not JSON `null`), so `IS NULL` finds it."""

    impl = JSON
    cache_ok = True

    def __init__(self, none_as_null: bool = False) -> None:
        super().__init__(none_as_null=none_as_null)
        self.none_as_null = none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=self.none_as_null))
        return dialect.type_descriptor(JSON(none_as_null=self.none_as_null))

    def bind_processor(self, dialect: Dialect) -> _BindProcessor | None:
        if serializer_passes(getattr(dialect, "_json_serializer", None)):
            return super().bind_processor(dialect)
        # An engine whose serializer would write a `JSONText` as a JSON string: the walk only.
        inner = self.impl_instance.bind_processor(dialect)

        def process(value: Any) -> Any:
            storable = None if value is None else storable_json(value)
            return storable if inner is None else inner(storable)

        return process

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        # Plain JSON data (the pipeline's rows: dumped models, orders, broker answers) is
        # serialized here, once, and the text checked as a whole; the engine's serializer
        # passes it through. Anything else takes the walk that makes every string storable.
        text = _plain_json_text(value)
        return storable_json(value) if text is None else JSONText(text)


JSONType = SafeJSON()
NullableJSON = SafeJSON(none_as_null=True)
Money = Numeric(24, 8, asdecimal=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        Decimal: Money,
        dict[str, Any]: JSONType,
        str: SafeString(),
    }


class Strategy(Base):
    __tablename__ = "strategies"

    id: Mapped[str] = mapped_column(SafeString(128), primary_key=True)
    description: Mapped[str | None] = mapped_column(SafeText())
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    base_timeframe: Mapped[str | None] = mapped_column(SafeString(16))
    universe_symbols: Mapped[list[str] | None] = mapped_column(JSONType)
    max_position_pct_equity: Mapped[Decimal | None]
    max_notional_per_trade: Mapped[Decimal | None]
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    source: Mapped[str] = mapped_column(SafeString(16), default="builtin")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TradeDecisionRow(Base):
    __tablename__ = "trade_decisions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    strategy_id: Mapped[str] = mapped_column(ForeignKey("strategies.id"), index=True)
    symbol: Mapped[str] = mapped_column(SafeString(32), index=True)
    timeframe: Mapped[str] = mapped_column(SafeString(16))
    action: Mapped[str] = mapped_column(SafeString(8))
    qty: Mapped[Decimal]
    decision_json: Mapped[dict[str, Any]] = mapped_column(JSONType)
    decision_hash: Mapped[str] = mapped_column(SafeString(64), unique=True)
    status: Mapped[str] = mapped_column(SafeString(32), index=True)
    reason: Mapped[str | None] = mapped_column(SafeText())
    event_ts: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    executed_at: Mapped[datetime | None]
    # The order as handed to the broker, written before it is sent and cleared once the
    # broker's answer is recorded: while it is set, the order may be live, and a restart
    # re-sends exactly it (never a re-reviewed one).
    pending_order_json: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)


class ExecutionRow(Base):
    __tablename__ = "executions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    trade_decision_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trade_decisions.id"), unique=True
    )
    client_order_id: Mapped[str] = mapped_column(SafeString(128), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(SafeString(128), index=True)
    broker: Mapped[str] = mapped_column(SafeString(16))
    symbol: Mapped[str] = mapped_column(SafeString(32), index=True)
    side: Mapped[str] = mapped_column(SafeString(8))
    order_type: Mapped[str] = mapped_column(SafeString(16))
    time_in_force: Mapped[str] = mapped_column(SafeString(8))
    submitted_qty: Mapped[Decimal]
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    filled_qty: Mapped[Decimal] = mapped_column(default=Decimal(0))
    avg_fill_price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(SafeString(32), index=True)
    reject_reason: Mapped[str | None] = mapped_column(SafeText())
    raw_json: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_polled_at: Mapped[datetime | None]


class LLMDecisionReview(Base):
    __tablename__ = "llm_decision_reviews"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    trade_decision_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trade_decisions.id"), index=True
    )
    provider: Mapped[str] = mapped_column(SafeString(16))
    model: Mapped[str] = mapped_column(SafeString(128))
    prompt_version: Mapped[str] = mapped_column(SafeString(32))
    prompt_hash: Mapped[str | None] = mapped_column(SafeString(64))
    input_json: Mapped[dict[str, Any]] = mapped_column(JSONType)
    response_json: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    llm_verdict: Mapped[str | None] = mapped_column(SafeString(16))
    verdict: Mapped[str] = mapped_column(SafeString(16), index=True)
    reason: Mapped[str | None] = mapped_column(SafeText())
    confidence: Mapped[float | None] = mapped_column(Float)
    adjusted_qty: Mapped[Decimal | None]
    adjusted_order_type: Mapped[str | None] = mapped_column(SafeString(16))
    rationale: Mapped[str | None] = mapped_column(SafeText())
    risk_flags: Mapped[list[str] | None] = mapped_column(JSONType)
    tokens_prompt: Mapped[int | None] = mapped_column(Integer)
    tokens_completion: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    shadow: Mapped[bool] = mapped_column(Boolean)
    fail_mode: Mapped[str] = mapped_column(SafeString(16))
    trading_mode: Mapped[str] = mapped_column(SafeString(8))
    effective_action: Mapped[str] = mapped_column(SafeString(32))
    error_code: Mapped[str | None] = mapped_column(SafeString(32), index=True)
    error_message: Mapped[str | None] = mapped_column(SafeText())
    notional: Mapped[Decimal | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # With --anonymize: the request before anonymising (input_json holds what was sent).
    real_request_json: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)


class SignalCursor(Base):
    """Where a signal source stopped: the last `(event_ts, symbol, seq)` fully processed."""

    __tablename__ = "signal_cursors"

    source: Mapped[str] = mapped_column(SafeString(256), primary_key=True)
    event_ts: Mapped[datetime]
    symbol: Mapped[str] = mapped_column(SafeString(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PriceReferenceRow(Base):
    """A symbol's reference price for the price band (`trading/ledger.py`): the last accepted
    price, and the run of out-of-band prices that agree since. Kept here, not in memory, so
    that a restart of `serve` or `replay` on the same database keeps guarding the symbol."""

    __tablename__ = "price_references"

    symbol: Mapped[str] = mapped_column(SafeString(32), primary_key=True)
    price: Mapped[Decimal]
    candidate_price: Mapped[Decimal | None]
    streak: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SimAccount(Base):
    __tablename__ = "sim_accounts"

    id: Mapped[str] = mapped_column(SafeString(32), primary_key=True)
    cash: Mapped[Decimal]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SimPosition(Base):
    __tablename__ = "sim_positions"

    symbol: Mapped[str] = mapped_column(SafeString(32), primary_key=True)
    qty: Mapped[Decimal]
    avg_entry_price: Mapped[Decimal]
    last_price: Mapped[Decimal]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SimOrder(Base):
    __tablename__ = "sim_orders"

    client_order_id: Mapped[str] = mapped_column(SafeString(128), primary_key=True)
    broker_order_id: Mapped[str] = mapped_column(SafeString(64), unique=True)
    symbol: Mapped[str] = mapped_column(SafeString(32))
    side: Mapped[str] = mapped_column(SafeString(8))
    order_type: Mapped[str] = mapped_column(SafeString(16))
    time_in_force: Mapped[str] = mapped_column(SafeString(8))
    qty: Mapped[Decimal]
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(SafeString(32))
    filled_qty: Mapped[Decimal] = mapped_column(default=Decimal(0))
    avg_fill_price: Mapped[Decimal | None]
    reject_reason: Mapped[str | None] = mapped_column(SafeText())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


Index(
    "ix_llm_decision_reviews_verdict_created",
    LLMDecisionReview.verdict,
    LLMDecisionReview.created_at,
)
Index(
    "ix_trade_decisions_symbol_event_ts",
    TradeDecisionRow.symbol,
    TradeDecisionRow.event_ts,
)


class TradingHaltRow(Base):
    """The operator's runtime halt: one row per key (`trading`), absent until first used."""

    __tablename__ = "trading_halt"

    id: Mapped[str] = mapped_column(SafeString(32), primary_key=True)
    halted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(SafeText())
    since: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TradingHaltEvent(Base):
    """Every halt and resume an operator asked for, with its reason: the control's audit."""

    __tablename__ = "trading_halt_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    action: Mapped[str] = mapped_column(SafeString(8))
    reason: Mapped[str] = mapped_column(SafeText())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class QuarantinedBatch(Base):
    """A batch of signals the loop skipped after it failed the same way several times in a
    row (trading/quarantine.py); the signals are kept whole for an operator to replay."""

    __tablename__ = "quarantined_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(SafeString(256))
    first_event_ts: Mapped[datetime]
    first_symbol: Mapped[str] = mapped_column(SafeString(32))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_event_ts: Mapped[datetime]
    last_symbol: Mapped[str] = mapped_column(SafeString(32))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    signal_count: Mapped[int] = mapped_column(Integer)
    signals_json: Mapped[list[Any]] = mapped_column(JSONType)
    error: Mapped[str] = mapped_column(SafeString(500))
    failures: Mapped[int] = mapped_column(Integer)
    quarantined_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
