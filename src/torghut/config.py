"""Settings: the only reader of the environment (and of `.env`).

Every variable of CONTRACT §2 is a field here, named as the variable in lower case. Values come
from the environment, then from `.env` in the current directory; the environment wins. Settings
are built once (by the CLI, or by a test) and handed to the parts that need them; nothing reads
them at import time.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from torghut.domain import FailMode, TradingMode
from torghut.errors import ConfigError


class LLMProvider(StrEnum):
    JANGAR = "jangar"
    OPENAI = "openai"


class SignalSourceKind(StrEnum):
    REPLAY = "replay"
    CLICKHOUSE = "clickhouse"


class BrokerKind(StrEnum):
    SIM = "sim"
    ALPACA = "alpaca"


# A SQLite file URL without a query string: no authority, no port, nothing SQLAlchemy's URL
# parser could refuse (its name pattern is wider than `\w`, and it takes any path).
_PLAIN_SQLITE = re.compile(r"sqlite(?:\+\w+)?:///[^?]*", re.ASCII)

# Fields whose value is never quoted back in an error message.
_SECRET_FIELDS = (
    "db_dsn",
    "jangar_api_key",
    "openai_api_key",
    "apca_api_key_id",
    "apca_api_secret_key",
    "clickhouse_password",
    "torghut_api_token",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
        validate_default=True,
    )

    # --- LLM review (seed names) ---
    jangar_base_url: str | None = None
    jangar_api_key: SecretStr | None = None
    llm_provider: LLMProvider | None = None  # resolved by the rule below
    llm_enabled: bool = False
    llm_model: str = Field(default="gpt-5.3-codex", pattern=r"^\S{1,128}$")
    llm_prompt_version: str = Field(default="v1", pattern=r"^[A-Za-z0-9_.-]+$")
    llm_fail_mode: FailMode | None = None  # resolved from the trading mode
    llm_shadow_mode: bool = True
    llm_temperature: float = Field(default=0.2, ge=0, le=2)
    llm_max_tokens: int = Field(default=300, gt=0)
    llm_min_confidence: float = Field(default=0.5, ge=0, le=1)
    llm_adjustment_allowed: bool = False
    llm_min_qty_multiplier: float = Field(default=0.5, gt=0)
    llm_max_qty_multiplier: float = Field(default=1.25, gt=0)
    llm_circuit_max_errors: int = Field(default=3, ge=1)
    llm_circuit_window_seconds: float = Field(default=300, gt=0)
    llm_circuit_cooldown_seconds: float = Field(default=600, ge=0)
    # --- LLM clocks and limits (added) ---
    llm_timeout_seconds: float = Field(default=20, gt=0, le=3600)
    llm_connect_timeout_seconds: float = Field(default=3, gt=0, le=3600)
    llm_first_token_timeout_seconds: float = Field(default=15, gt=0, le=3600)
    llm_idle_timeout_seconds: float = Field(default=10, gt=0, le=3600)
    llm_max_response_bytes: int = Field(default=1_048_576, ge=1024)
    llm_max_retries: int = Field(default=1, ge=0, le=10)
    llm_max_concurrency: int = Field(default=8, ge=1, le=1024)
    llm_context_bars: int = Field(default=30, ge=0, le=500)
    # Set by --anonymize (replay, serve, llm review): symbols tokenised, dates shifted in what
    # the reviewer is sent.
    llm_anonymize: bool = False
    # --- OpenAI provider (read as the SDK reads them) ---
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # --- trading ---
    trading_mode: TradingMode = TradingMode.PAPER
    trading_enabled: bool = False
    trading_live_enabled: bool = False
    trading_kill_switch: bool = False
    trading_sim_cash: float = Field(default=100_000, ge=0)
    trading_max_notional_per_trade: float = Field(default=1000, gt=0)
    trading_max_position_pct_equity: float = Field(default=0.1, gt=0, le=1)
    trading_allow_shorts: bool = False
    trading_cooldown_seconds: float = Field(default=0, ge=0)
    trading_universe: str | None = None  # comma-separated symbols; unset = every symbol
    trading_strategy_config_path: Path | None = None
    trading_strategy_config_mode: Literal["merge", "sync"] = "merge"
    trading_poll_interval_seconds: float = Field(default=5, gt=0)
    trading_reconcile_interval_seconds: float = Field(default=15, gt=0)
    trading_batch_size: int = Field(default=500, ge=1, le=100_000)
    trading_signal_source: SignalSourceKind = SignalSourceKind.REPLAY
    trading_signals_path: Path | None = None  # default: the bundled sample
    trading_broker: BrokerKind = BrokerKind.SIM
    trading_broker_timeout_seconds: float = Field(default=10, gt=0)
    trading_resend_window_seconds: float = Field(default=60, ge=0, le=3600)
    trading_max_price_move_pct: float = Field(default=0.10, gt=0, le=10)
    trading_max_shares_per_order: int = Field(default=10_000, ge=1, le=1_000_000_000)
    trading_max_signal_age_seconds: float = Field(default=120, gt=0, le=315_360_000)
    trading_extended_hours: bool = False
    # The exchange calendar of the session check (exchange_calendars code), or `always` for a
    # market that never closes (crypto; a test bench).
    trading_calendar: Literal["XNYS", "XNAS", "always"] = "XNYS"
    # Alpaca allows an account 200 requests a minute; every call of ours shares this budget.
    alpaca_max_requests_per_minute: int = Field(default=180, ge=1, le=10_000)
    apca_api_key_id: SecretStr | None = None
    apca_api_secret_key: SecretStr | None = None
    apca_api_base_url: str | None = None
    clickhouse_url: str | None = None
    clickhouse_username: str = "default"
    clickhouse_password: SecretStr | None = None
    clickhouse_timeout_seconds: float = Field(default=10, gt=0)
    clickhouse_settle_seconds: float = Field(default=2, ge=0, le=300)
    clickhouse_ca_file: Path | None = None  # PEM of a private CA for an https:// CLICKHOUSE_URL
    # --- service ---
    db_dsn: str = "sqlite:///torghut.db"
    torghut_port: int = Field(default=8181, ge=1, le=65535)
    torghut_host: str = "0.0.0.0"
    torghut_log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per log line
    # Bearer token of the HTTP API: unset, state-changing endpoints are refused (403).
    torghut_api_token: SecretStr | None = None
    torghut_api_public_reads: bool = False

    @field_validator("jangar_base_url", "openai_base_url", "apca_api_base_url", "clickhouse_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator(
        "jangar_api_key",
        "openai_api_key",
        "apca_api_key_id",
        "apca_api_secret_key",
        "torghut_api_token",
    )
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        # A key is sent in an HTTP header: whitespace or control characters would corrupt the
        # request (or inject a header), and a header value is ASCII (a non-ASCII key failed
        # every review at run time), so refuse them at start-up instead.
        if value is not None and any(c.isspace() or ord(c) < 32 for c in value.get_secret_value()):
            raise ValueError("must not contain spaces, newlines or control characters")
        if value is not None and not value.get_secret_value().isascii():
            raise ValueError("must be ASCII (it is sent in an HTTP header)")
        return value

    @field_validator("torghut_api_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Guessable tokens would make the bearer check decoration.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("clickhouse_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        # Loaded once here so a missing or garbled file stops the start, not every fetch.
        if value is None:
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except (ssl.SSLError, ValueError):  # SSLError first: it is an OSError too
            raise ValueError(f"{value} holds no PEM certificate") from None
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        return value

    @field_validator("db_dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        base = scheme.split("+", 1)[0]
        if base not in ("sqlite", "postgres", "postgresql"):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        if _PLAIN_SQLITE.fullmatch(value):
            return value  # SQLAlchemy accepts every such URL: no need to import it
        from sqlalchemy import make_url  # 0.1 s of imports a review without a database skips

        try:
            url = make_url(value)
            _ = url.port  # a non-numeric port only fails when read
        except Exception:
            raise ValueError("is not a valid database URL") from None
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        # `inf` parses as a float: a clock that never fires would let a review hang forever.
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("llm_fail_mode", mode="before")
    @classmethod
    def _fail_mode_alias(cls, value: Any) -> Any:
        # Operators write pass-through as often as pass_through.
        return value.replace("-", "_").lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.llm_provider is None:
            if self.llm_enabled and not (
                self.jangar_base_url or self.openai_api_key or self.openai_base_url
            ):
                # Name what is missing for the usual set-up (Jangar), not the OpenAI key the
                # fallback below would ask for.
                raise _CrossFieldError(
                    "jangar_base_url",
                    "is required with LLM_ENABLED=true (or set LLM_PROVIDER=openai and "
                    "OPENAI_API_KEY)",
                )
            provider = LLMProvider.JANGAR if self.jangar_base_url else LLMProvider.OPENAI
            object.__setattr__(self, "llm_provider", provider)
        if self.llm_provider is LLMProvider.JANGAR and not self.jangar_base_url:
            raise _CrossFieldError("llm_provider", "is jangar but JANGAR_BASE_URL is not set")
        if self.llm_fail_mode is None:
            live = self.trading_mode is TradingMode.LIVE
            default = FailMode.VETO if live else FailMode.PASS_THROUGH
            object.__setattr__(self, "llm_fail_mode", default)
        elif self.trading_mode is TradingMode.LIVE and self.llm_fail_mode is FailMode.PASS_THROUGH:
            raise _CrossFieldError(
                "llm_fail_mode", "pass_through is not allowed with TRADING_MODE=live (use veto)"
            )
        if self.llm_min_qty_multiplier > self.llm_max_qty_multiplier:
            raise _CrossFieldError(
                "llm_min_qty_multiplier", "must not be greater than LLM_MAX_QTY_MULTIPLIER"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No environment source: `load_settings` passes the process environment's variables
        # as init values, ranked as that source ranks them (under `environ`, over `.env`), and
        # the source only found them again field by field (a millisecond of every start-up).
        # It hands every value on as the string it is (tests/unit/test_config.py checks it).
        # The .env source, when the file holds no variable (or is missing: an operator's dry
        # run, the image), would find nothing either, after walking every field as well.
        if isinstance(dotenv_settings, DotEnvSettingsSource) and not dotenv_settings.env_vars:
            return init_settings, file_secret_settings
        return init_settings, dotenv_settings, file_secret_settings

    # --- resolved views (never None after validation) ---
    @property
    def provider(self) -> LLMProvider:
        assert self.llm_provider is not None
        return self.llm_provider

    @property
    def fail_mode(self) -> FailMode:
        assert self.llm_fail_mode is not None
        return self.llm_fail_mode

    @property
    def universe(self) -> frozenset[str] | None:
        if not self.trading_universe:
            return None
        return frozenset(s.strip().upper() for s in self.trading_universe.split(",") if s.strip())

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        values = [
            s.get_secret_value()
            for s in (getattr(self, name) for name in _SECRET_FIELDS)
            if isinstance(s, SecretStr)
        ]
        values.extend(_dsn_passwords(self.db_dsn))
        return [v for v in values if v]

    def redacted_dsn(self) -> str:
        """The DSN as printed: its password, in the authority or in the query string
        (`?password=`), replaced by `***`."""
        parts = urlsplit(self.db_dsn)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            parts = parts._replace(netloc=netloc)
        if parts.query:
            query = [
                (k, "***" if k.lower() in _PASSWORD_PARAMS else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ]
            parts = parts._replace(query=urlencode(query, safe="*"))
        return urlunsplit(parts)


# Query parameters of a DSN that hold a password (libpq's `password`; SQLAlchemy passes the
# query to the driver as it is).
_PASSWORD_PARAMS = frozenset({"password", "passwd", "pass"})


def _dsn_passwords(dsn: str) -> list[str]:
    """Every password in `dsn`: in the authority (`user:pw@`) and in the query string, both
    as written (percent-encoded) and decoded, since either may be echoed by a driver."""
    if "://" not in dsn:
        return []
    parts = urlsplit(dsn)
    found: list[str] = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in _PASSWORD_PARAMS and value:
            found.append(value)
    for raw in parts.query.split("&"):
        key, _, value = raw.partition("=")
        if key.lower() in _PASSWORD_PARAMS and value:
            found.append(value)
    return found


class _CrossFieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def _variable(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper() if loc else "configuration"


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
) -> Settings:
    """Build settings from `environ` (default: the process environment) and `env_file`.

    Raises `ConfigError` naming the variable at fault; the message never quotes a secret.
    """
    fields = Settings.model_fields
    # The process environment always (as pydantic-settings' environment source read it), then
    # `environ` over it; empty values are unset.
    values: dict[str, Any] = {
        k.lower(): v for k, v in os.environ.items() if k.lower() in fields and v != ""
    }
    if environ is not None:
        values.update({k.lower(): v for k, v in environ.items() if k.lower() in fields and v != ""})
    try:
        # Init values win over the .env file, as the environment must.
        return Settings(_env_file=env_file, **values)
    except _CrossFieldError as exc:
        raise ConfigError(exc.field.upper(), str(exc)) from None
    except UnicodeDecodeError as exc:
        # The .env file is read as UTF-8: say where it is not, never quote its bytes.
        raise ConfigError(
            str(env_file), f"is not UTF-8 (byte {exc.start}); save it as UTF-8"
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        ctx_error = first.get("ctx", {}).get("error")
        if isinstance(ctx_error, _CrossFieldError):
            raise ConfigError(ctx_error.field.upper(), str(ctx_error)) from None
        name = _variable(tuple(first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        if name.lower() not in _SECRET_FIELDS and "input" in first:
            shown = str(first["input"])
            if len(shown) <= 60:
                message = f"{message} (got {shown!r})"
        raise ConfigError(name, message) from None
