"""Every variable of CONTRACT §2: its default, and one bad value naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from torghut.config import LLMProvider, Settings, load_settings
from torghut.domain import FailMode, TradingMode
from torghut.errors import ConfigError

JANGAR = {"JANGAR_BASE_URL": "http://jangar.local"}

# variable -> (default as the settings hold it, a bad value)
CONTRACT_VARIABLES: dict[str, tuple[object, str]] = {
    "JANGAR_BASE_URL": (None, "ftp://jangar"),
    "JANGAR_API_KEY": (None, "key with\nnewline"),
    "LLM_PROVIDER": (LLMProvider.OPENAI, "anthropic"),
    "LLM_ENABLED": (False, "maybe"),
    "LLM_MODEL": ("gpt-5.3-codex", "two words"),
    "LLM_PROMPT_VERSION": ("v1", "../etc"),
    "LLM_FAIL_MODE": (FailMode.PASS_THROUGH, "ignore"),
    "LLM_SHADOW_MODE": (True, "sometimes"),
    "LLM_TEMPERATURE": (0.2, "hot"),
    "LLM_MAX_TOKENS": (300, "-5"),
    "LLM_MIN_CONFIDENCE": (0.5, "1.5"),
    "LLM_ADJUSTMENT_ALLOWED": (False, "perhaps"),
    "LLM_MIN_QTY_MULTIPLIER": (0.5, "-1"),
    "LLM_MAX_QTY_MULTIPLIER": (1.25, "zero"),
    "LLM_CIRCUIT_MAX_ERRORS": (3, "0"),
    "LLM_CIRCUIT_WINDOW_SECONDS": (300, "-1"),
    "LLM_CIRCUIT_COOLDOWN_SECONDS": (600, "soon"),
    "TRADING_MODE": (TradingMode.PAPER, "backtest"),
    "TRADING_ENABLED": (False, "nope"),
    "DB_DSN": ("sqlite:///torghut.db", "mysql://db/x"),
    "OPENAI_API_KEY": (None, "sk-abc def"),
    "OPENAI_BASE_URL": (None, "not a url"),
    "LLM_TIMEOUT_SECONDS": (20, "-1"),
    "LLM_CONNECT_TIMEOUT_SECONDS": (3, "abc"),
    "LLM_FIRST_TOKEN_TIMEOUT_SECONDS": (15, "0"),
    "LLM_IDLE_TIMEOUT_SECONDS": (10, "-3"),
    "LLM_MAX_RESPONSE_BYTES": (1_048_576, "lots"),
    "LLM_MAX_RETRIES": (1, "-1"),
    "LLM_MAX_CONCURRENCY": (8, "0"),
    "TRADING_SIM_CASH": (100_000, "-10"),
    "TRADING_MAX_NOTIONAL_PER_TRADE": (1000, "0"),
    "TRADING_KILL_SWITCH": (False, "later"),
    "TORGHUT_PORT": (8181, "70000"),
    "TRADING_MAX_PRICE_MOVE_PCT": (0.10, "0"),
    "TRADING_MAX_SHARES_PER_ORDER": (10_000, "1.5"),
    "TRADING_MAX_SIGNAL_AGE_SECONDS": (120, "-1"),
    "TRADING_EXTENDED_HOURS": (False, "weekends"),
    "TRADING_CALENDAR": ("XNYS", "LSE"),
    "ALPACA_MAX_REQUESTS_PER_MINUTE": (180, "0"),
    "CLICKHOUSE_CA_FILE": (None, "/nonexistent/ca.pem"),
}


@pytest.mark.parametrize("variable", sorted(CONTRACT_VARIABLES))
def test_default(variable: str) -> None:
    settings = load_settings({}, env_file=None)
    expected, _bad = CONTRACT_VARIABLES[variable]
    assert getattr(settings, variable.lower()) == expected


@pytest.mark.parametrize("variable", sorted(CONTRACT_VARIABLES))
def test_bad_value_names_the_variable(variable: str) -> None:
    _default, bad = CONTRACT_VARIABLES[variable]
    env = {**JANGAR, variable: bad} if variable != "JANGAR_BASE_URL" else {variable: bad}
    with pytest.raises(ConfigError) as info:
        load_settings(env, env_file=None)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")
    assert "\n" not in str(info.value)


def test_every_contract_variable_is_a_setting() -> None:
    for variable in CONTRACT_VARIABLES:
        assert variable.lower() in Settings.model_fields


def test_provider_defaults_to_jangar_when_base_url_set_and_drops_trailing_slash() -> None:
    s = load_settings({"JANGAR_BASE_URL": "http://jangar.jangar.svc.cluster.local/"}, None)
    assert s.provider is LLMProvider.JANGAR
    assert s.jangar_base_url == "http://jangar.jangar.svc.cluster.local"


def test_jangar_provider_without_base_url_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"LLM_PROVIDER": "jangar"}, None)
    assert info.value.variable == "LLM_PROVIDER"


def test_live_defaults_fail_mode_to_veto() -> None:
    assert load_settings({"TRADING_MODE": "live"}, None).fail_mode is FailMode.VETO
    assert load_settings({"TRADING_MODE": "paper"}, None).fail_mode is FailMode.PASS_THROUGH


def test_live_refuses_explicit_pass_through_naming_llm_fail_mode() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TRADING_MODE": "live", "LLM_FAIL_MODE": "pass_through"}, None)
    assert info.value.variable == "LLM_FAIL_MODE"


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LLM_MODEL=from-file\nLLM_MAX_RETRIES=4\n")
    s = load_settings({"LLM_MODEL": "from-env"}, env_file=env_file)
    assert s.llm_model == "from-env"
    assert s.llm_max_retries == 4


def test_bad_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LLM_FAIL_MODE=sometimes\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, env_file=env_file)
    assert info.value.variable == "LLM_FAIL_MODE"


def test_secret_values_never_in_error_messages() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"JANGAR_API_KEY": "sk-supersecret-123", "LLM_MAX_TOKENS": "x"}, None)
    assert "sk-supersecret-123" not in str(info.value)


def test_secrets_listed_for_redaction_including_db_password() -> None:
    s = load_settings(
        {
            "JANGAR_BASE_URL": "http://j",
            "JANGAR_API_KEY": "jangar-key-1",
            "OPENAI_API_KEY": "openai-key-2",
            "DB_DSN": "postgresql://u:db-pass-3@h/d",
        },
        None,
    )
    assert set(s.secrets()) >= {"jangar-key-1", "openai-key-2", "db-pass-3"}
    assert "db-pass-3" not in s.redacted_dsn()
    assert "jangar-key-1" not in repr(s)


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql://u@h/d?password=q-pass-4&sslmode=require", "q-pass-4"),
        ("postgresql://u@h/d?sslmode=require&PASSWORD=q%2Fpass-5", "q/pass-5"),
        ("postgresql://u:a%40pass-6@h/d", "a@pass-6"),
    ],
)
def test_dsn_password_in_the_query_string_is_a_secret(dsn: str, password: str) -> None:
    s = load_settings({"DB_DSN": dsn}, None)
    assert password in s.secrets()
    printed = s.redacted_dsn()
    assert password not in printed and password.replace("/", "%2F") not in printed
    assert ("***" in printed and "sslmode=require" in printed) or "?" not in dsn


def test_non_ascii_key_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**JANGAR, "JANGAR_API_KEY": "clé-7"}, None)
    assert info.value.variable == "JANGAR_API_KEY"


def test_postgres_scheme_accepted() -> None:
    s = load_settings({"DB_DSN": "postgres://u@h:5432/d"}, None)
    assert s.db_dsn.startswith("postgres://")


@pytest.mark.parametrize(
    "variable",
    [
        "LLM_TIMEOUT_SECONDS",
        "LLM_FIRST_TOKEN_TIMEOUT_SECONDS",
        "LLM_IDLE_TIMEOUT_SECONDS",
        "LLM_CONNECT_TIMEOUT_SECONDS",
        "LLM_CIRCUIT_COOLDOWN_SECONDS",
        "TRADING_SIM_CASH",
        "TRADING_RESEND_WINDOW_SECONDS",
    ],
)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_clocks_and_amounts_must_be_finite(variable: str, value: str) -> None:
    """A clock of `inf` would let a review hang the loop forever."""
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value}, env_file=None)
    assert info.value.variable == variable


@pytest.mark.parametrize("dsn", ["mysql://u:s3cretpw@h/db", "postgresql://u:s3cretpw@h:badport/db"])
def test_bad_dsn_is_named_without_its_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"DB_DSN": dsn}, env_file=None)
    assert info.value.variable == "DB_DSN"
    assert "s3cretpw" not in str(info.value)


@pytest.mark.parametrize("value", ["-1", "3601", "soon"])
def test_resend_window_is_a_bounded_number_of_seconds(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TRADING_RESEND_WINDOW_SECONDS": value}, env_file=None)
    assert info.value.variable == "TRADING_RESEND_WINDOW_SECONDS"
    assert load_settings({}, env_file=None).trading_resend_window_seconds == 60


def test_the_environment_source_would_hand_every_variable_on_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings has no environment source: `load_settings` passes the environment as init
    values, which is the same only while that source takes each variable, named as its field,
    as the string it is (no JSON decoding of a complex field, no alias, no coercion)."""
    for name in Settings.model_fields:
        monkeypatch.setenv(name.upper(), f"value of {name}")
    found = EnvSettingsSource(Settings, case_sensitive=False)()
    assert found == {name: f"value of {name}" for name in Settings.model_fields}


class _AllSources(Settings):
    """Settings as pydantic-settings builds them by default: with every source."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, file_secret_settings


def _by_default_sources(environ: dict[str, str] | None, env_file: Path) -> object:
    """What `load_settings` made when the environment source read the process environment."""
    source = os.environ if environ is None else environ
    values = {
        k.lower(): v for k, v in source.items() if k.lower() in Settings.model_fields and v != ""
    }
    try:
        return _AllSources(_env_file=env_file, **values).model_dump()
    except ValidationError as exc:
        return exc.errors(include_url=False)[0]["loc"]


def _loaded(environ: dict[str, str] | None, env_file: Path) -> object:
    try:
        return load_settings(environ, env_file).model_dump()
    except ConfigError as exc:
        return (exc.variable.lower(),)


@pytest.mark.parametrize(
    ("process", "environ"),
    [
        ({"JANGAR_BASE_URL": "http://j.local/", "llm_model": "m1", "LLM_MAX_RETRIES": ""}, None),
        ({"JANGAR_BASE_URL": "http://j.local", "Llm_Max_Retries": "3"}, {"LLM_MODEL": "m2"}),
        ({"LLM_MODEL": "from-process", "TRADING_MODE": "live"}, {"LLM_MODEL": ""}),
        ({"LLM_MAX_TOKENS": "9"}, {"LLM_MAX_TOKENS": "7", "JANGAR_BASE_URL": "http://x"}),
        ({"LLM_MAX_TOKENS": "lots"}, {"JANGAR_BASE_URL": "http://x"}),
        ({"JANGAR_BASE_URL": "http://x", "UNRELATED": "1"}, {"LLM_MAX_TOKENS": "-1"}),
        ({}, {"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-1234"}),
    ],
)
@pytest.mark.parametrize(
    "dotenv",
    ["LLM_MODEL=from-file\nLLM_MAX_RETRIES=4\nTRADING_SIM_CASH=5\n", "UNRELATED=1\n", "", None],
)
def test_settings_are_those_the_default_sources_made(
    process: dict[str, str],
    environ: dict[str, str] | None,
    dotenv: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The environment source and (for a .env file with no variable, or none) the .env source
    are left out: the same settings, or the same variable named."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    for name, value in process.items():
        monkeypatch.setenv(name, value)
    env_file = tmp_path / ".env"
    if dotenv is not None:
        env_file.write_text(dotenv)
    assert _loaded(environ, env_file) == _by_default_sources(environ, env_file)
