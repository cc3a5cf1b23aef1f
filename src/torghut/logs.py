"""What the service says in its log: set-up (text or JSON lines, secrets redacted), the
start-up banner, and one line per order, broker rejection, gate veto and halt change (the
breaker words its own transitions, in trading/llm/circuit.py, with the same `event` field).

The event functions are the only place these lines are worded, so that `LOG_FORMAT=json` gives
every event the same fields (`event` names it) and a test can hold them to the format. Every
line passes `RedactingFilter`, which replaces every configured secret wherever it appears:
message, arguments, traceback and extra fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from torghut.build import build_details
from torghut.errors import redact

if TYPE_CHECKING:
    from torghut.config import Settings
    from torghut.domain import BrokerOrder, OrderRequest, TradeDecision

log = logging.getLogger("torghut")
events = logging.getLogger("torghut.events")

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# The HTTP libraries (the openai SDK's httpx2 too) log requests and peer text at INFO and DEBUG:
# kept at WARNING whatever TORGHUT_LOG_LEVEL says.
_NOISY: Final = ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "alembic", "uvicorn.access")


class RedactingFilter(logging.Filter):
    """Replaces every configured secret in every log line, whoever logged it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message, self.secrets, limit=None)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = redact(text, self.secrets, limit=None)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets, limit=None)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS:
                record.__dict__[key] = _redact_value(value, self.secrets)
        return True


def _redact_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets, limit=None)
    if isinstance(value, Mapping):
        return {k: _redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, secrets) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts`, `level`, `logger`, `message`, the record's extra fields,
    and `exc` (the traceback as one string) when there is one. The standard library has no
    JSON formatter, and one small class is less than a dependency."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in out:
                out[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=True, default=str)


def setup_logging(settings: Settings | None, level: str | None = None) -> None:
    """Root logging to stderr in the configured format, redacting the configured secrets.
    `level` overrides `TORGHUT_LOG_LEVEL` (the CLI quietens replay and report)."""
    name = (level or (settings.torghut_log_level if settings else "info")).upper()
    handler = logging.StreamHandler(sys.stderr)
    json_lines = settings is not None and settings.log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(settings.secrets() if settings else []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def always(message: str, **fields: Any) -> None:
    """One line whatever the log level (a command's closing line), in the log's format and
    through its redaction: handed to the root handlers directly."""
    record = log.makeRecord(log.name, logging.INFO, "(torghut)", 0, message, (), None, extra=fields)
    for handler in logging.getLogger().handlers:
        handler.handle(record)


# ------------------------------------------------------------------------------- the events
def gate_stage(settings: Settings) -> str:
    """The rollout stage of docs/rollout.md the settings amount to (stages 1 and 2 share
    their settings)."""
    if not settings.llm_enabled:
        return "off"
    if settings.llm_shadow_mode:
        return "1-2 shadow"
    if settings.trading_mode.value == "live":
        return "4 live" if settings.fail_mode.value == "veto" else "live, pass-through"
    return "3 enforce in paper" if settings.fail_mode.value == "pass_through" else "3 (veto)"


def startup_fields(settings: Settings, command: str) -> dict[str, Any]:
    """What the banner says, with nothing secret in it: the DSN with its password masked, no
    key at all (only whether one is set)."""
    build = build_details()
    return {
        "command": command,
        "version": build["version"],
        "git_commit": build["git_commit"],
        "mode": settings.trading_mode.value,
        "trading_enabled": settings.trading_enabled,
        "kill_switch": settings.trading_kill_switch,
        "broker": settings.trading_broker.value,
        "signal_source": settings.trading_signal_source.value,
        "llm_enabled": settings.llm_enabled,
        "provider": settings.provider.value,
        "model": settings.llm_model,
        "prompt_version": settings.llm_prompt_version,
        "gate_stage": gate_stage(settings),
        "shadow": settings.llm_shadow_mode,
        "fail_mode": settings.fail_mode.value,
        "limits": {
            "max_notional_per_trade": settings.trading_max_notional_per_trade,
            "max_position_pct_equity": settings.trading_max_position_pct_equity,
            "allow_shorts": settings.trading_allow_shorts,
            "cooldown_seconds": settings.trading_cooldown_seconds,
            "universe": sorted(settings.universe) if settings.universe else "all",
            "llm_timeout_seconds": settings.llm_timeout_seconds,
            "llm_max_concurrency": settings.llm_max_concurrency,
        },
        "database": settings.redacted_dsn(),
    }


def startup_banner(settings: Settings, command: str) -> None:
    fields = startup_fields(settings, command)
    limits = " ".join(f"{k}={v}" for k, v in fields["limits"].items())
    llm = (
        f"llm {fields['provider']}/{fields['model']} prompt {fields['prompt_version']} "
        f"gate stage {fields['gate_stage']} (shadow={fields['shadow']}, "
        f"fail_mode={fields['fail_mode']})"
        if settings.llm_enabled
        else "llm off"
    )
    log.info(
        "torghut %s %s (commit %s): mode %s, trading %s%s, broker %s, signals %s, %s; "
        "limits %s; database %s",
        command,
        fields["version"],
        fields["git_commit"],
        fields["mode"],
        "enabled" if settings.trading_enabled else "disabled",
        ", KILL SWITCH ON" if settings.trading_kill_switch else "",
        fields["broker"],
        fields["signal_source"],
        llm,
        limits,
        fields["database"],
        extra={"event": "startup", **fields},
    )


def order_submitted(order: OrderRequest, placed: BrokerOrder, *, broker: str) -> None:
    if not events.isEnabledFor(logging.INFO):
        return  # one per order: a replay at `warning` need not build its fields
    events.info(
        "order %s %s %s %s %s: %s at %s as %s",
        order.client_order_id,
        order.side.value,
        order.qty,
        order.symbol,
        order.order_type.value,
        placed.status,
        broker,
        placed.broker_order_id,
        extra={
            "event": "order",
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": str(order.qty),
            "order_type": order.order_type.value,
            "status": placed.status,
            "broker": broker,
            "broker_order_id": placed.broker_order_id,
        },
    )


def order_rejected_by_broker(order: OrderRequest, reason: str, *, broker: str) -> None:
    events.warning(
        "order %s %s %s %s rejected by %s: %s",
        order.client_order_id,
        order.side.value,
        order.qty,
        order.symbol,
        broker,
        reason[:300],
        extra={
            "event": "order_rejected",
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": str(order.qty),
            "broker": broker,
            "reason": reason[:300],
        },
    )


def review_vetoed(
    decision: TradeDecision,
    decision_hash: str,
    reason: str,
    verdict: str,
    rationale: str | None = None,
) -> None:
    """The review gate rejected a decision (a veto, a policy refusal or, fail-closed, an
    error). The model's rationale is cut short: the audit row has all of it."""
    events.info(
        "decision %s %s %s %s rejected by the review gate: %s (verdict %s)%s",
        decision_hash,
        decision.action.value,
        decision.qty,
        decision.symbol,
        reason,
        verdict,
        f": {rationale[:200]}" if rationale else "",
        extra={
            "event": "veto",
            "decision_hash": decision_hash,
            "symbol": decision.symbol,
            "side": decision.action.value,
            "qty": str(decision.qty),
            "strategy_id": decision.strategy_id,
            "reason": reason,
            "verdict": verdict,
        },
    )


def halt_changed(halted: bool, reason: str | None, *, by: str | None = None) -> None:
    """Call where the halt is stored (POST /trading/halt, /trading/resume)."""
    events.warning(
        "trading %s%s%s",
        "HALTED" if halted else "resumed",
        f" by {by}" if by else "",
        f": {reason}" if reason else "",
        extra={
            "event": "halt" if halted else "resume",
            "halted": halted,
            "reason": reason,
            "by": by,
        },
    )
