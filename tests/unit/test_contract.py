"""Names other people depend on (CONTRACT §3, §4, §5, §7), held against the code."""

from __future__ import annotations

from torghut.cli import build_parser
from torghut.domain import EffectiveAction, Verdict
from torghut.errors import ReviewErrorCode

ERROR_CODES = {
    "connect_error",
    "http_error",
    "gateway_error",
    "stream_incomplete",
    "timeout",
    "response_too_large",
    "protocol_error",
    "invalid_json",
    "invalid_schema",
    "circuit_open",
}


def test_review_error_codes_are_the_contracts() -> None:
    assert {c.value for c in ReviewErrorCode} == ERROR_CODES


def test_verdicts_and_effective_actions() -> None:
    assert {v.value for v in Verdict} == {"approve", "veto", "adjust", "error"}
    assert {a.value for a in EffectiveAction} == {
        "submitted_original",
        "submitted_adjusted",
        "rejected",
    }


def test_cli_commands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"serve", "demo", "replay", "llm", "db", "dev-gateway"}
    llm = sub.choices["llm"]
    llm_sub = next(a for a in llm._actions if a.dest == "llm_command")
    assert set(llm_sub.choices) == {"review", "report", "eval"}
    db = sub.choices["db"]
    assert set(next(a for a in db._actions if a.dest == "db_command").choices) == {"upgrade"}


def test_http_routes() -> None:
    import asyncio

    from torghut.bootstrap import build_container
    from torghut.config import load_settings
    from torghut.main import create_app

    async def routes() -> set[str]:
        container = await build_container(load_settings({"DB_DSN": "sqlite://"}, None))
        try:
            app = create_app(container, run_scheduler=False)
            return {getattr(r, "path", "") for r in app.routes}
        finally:
            await container.aclose()

    assert {
        "/healthz",
        "/readyz",
        "/trading/status",
        "/trading/decisions",
        "/trading/executions",
        "/trading/reviews",
        "/metrics",
    } <= asyncio.run(routes())


def test_operator_surface_names() -> None:
    """CONTRACT §8: the operator's routes and settings."""
    import asyncio

    from torghut.bootstrap import build_container
    from torghut.config import Settings, load_settings
    from torghut.main import create_app

    async def routes() -> set[str]:
        container = await build_container(load_settings({"DB_DSN": "sqlite://"}, None))
        try:
            app = create_app(container, run_scheduler=False)
            return {getattr(r, "path", "") for r in app.routes}
        finally:
            await container.aclose()

    assert {
        "/trading/halt",
        "/trading/resume",
        "/",
        "/llm/report",
        "/llm/report.json",
        "/trading/account",
        "/trading/positions",
        "/trading/pnl",
    } <= asyncio.run(routes())
    assert {"torghut_api_token", "torghut_api_public_reads"} <= set(Settings.model_fields)


def test_sse_public_api() -> None:
    from torghut.trading.llm.sse import SSEDecoder, SSEEvent

    decoder = SSEDecoder(max_event_bytes=1024)
    events = decoder.feed(b"id: 7\nretry: 50\ndata: a\n\nevent: x\ndata: b\n\n")
    assert decoder.close() == []
    assert events == [SSEEvent("message", "a", "7", 50), SSEEvent("x", "b", "7", 50)]


def test_llm_eval_flags_of_contract_section_8() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    llm_sub = next(a for a in sub.choices["llm"]._actions if a.dest == "llm_command")
    flags = {o for a in llm_sub.choices["eval"]._actions for o in a.option_strings}
    assert {
        "--signals",
        "--horizons",
        "--cost-bps",
        "--json",
        "--html",
        "--min-veto-value-bps",
    } <= flags
    for command in ("replay", "serve"):
        assert "--anonymize" in {o for a in sub.choices[command]._actions for o in a.option_strings}


def test_section_8_reject_reasons() -> None:
    from torghut.trading import risk, session

    assert (
        risk.PRICE_OUT_OF_BAND,
        risk.MAX_SHARES_EXCEEDED,
        session.SIGNAL_STALE,
        session.MARKET_CLOSED,
        risk.STRATEGY_DISABLED,
    ) == (
        "price_out_of_band",
        "max_shares_exceeded",
        "signal_stale",
        "market_closed",
        "strategy_disabled",
    )
