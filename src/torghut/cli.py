"""`torghut`: the command line. The only place that turns errors into exit codes and prints.

Exit codes: 0 success; 1 the work ran and failed; 2 bad usage, input or configuration (one
line on stderr, no traceback)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from torghut.config import Settings, load_settings
from torghut.errors import REDACTED, ConfigError, InputError, TorghutError, redact
from torghut.logs import RedactingFilter, setup_logging, startup_banner

__all__ = ["RedactingFilter", "build_parser", "main", "setup_logging"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(TorghutError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep stderr.
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _settings() -> Settings:
    return load_settings()


# ---------------------------------------------------------------------------------- commands
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from torghut.db.engine import upgrade

    settings = _settings()
    setup_logging(settings)
    upgrade(settings.db_dsn)
    print(f"database at head: {settings.redacted_dsn()}", file=sys.stderr)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    setup_logging(settings)
    startup_banner(settings, "serve")
    port = args.port or settings.torghut_port
    host = args.host or settings.torghut_host
    return asyncio.run(_serve(settings, host, port))


async def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    class _GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, which would kill us before
        the trading loop is drained and the engine closed; we finish, then exit 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    from torghut.bootstrap import build_container, freeze_startup_heap
    from torghut.db.engine import upgrade
    from torghut.main import create_app

    freeze_startup_heap()
    await asyncio.to_thread(upgrade, settings.db_dsn)
    container = await build_container(settings)
    try:
        app = create_app(container)
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
            timeout_graceful_shutdown=10,
        )
        server = _GracefulServer(config)
        await server.serve()
        return EXIT_OK if server.started else EXIT_FAILED
    finally:
        await container.aclose()


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings()
    setup_logging(settings, "warning" if not args.verbose else None)
    startup_banner(settings, "replay")
    path = Path(args.signals)
    if not path.is_file():
        raise InputError(f"--signals: no such file: {path}")
    from torghut.bootstrap import freeze_startup_heap
    from torghut.replay import run_replay

    freeze_startup_heap()
    summary = asyncio.run(run_replay(settings, path))
    print(json.dumps(summary, ensure_ascii=True, sort_keys=False))
    # An incomplete run left signals unprocessed (their decisions could not be finished).
    return EXIT_OK if summary["complete"] else EXIT_FAILED


def cmd_llm_review(args: argparse.Namespace) -> int:
    from torghut.domain import TradeDecision

    settings = _settings()
    setup_logging(settings, "warning")
    raw = sys.stdin.read() if args.decision == "-" else _read_file(args.decision, "--decision")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"--decision: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError("--decision: must be one JSON object")
    try:
        decision = TradeDecision.model_validate(data)
    except Exception as exc:
        raise InputError(f"--decision: {_first_validation_error(exc)}") from None
    out = asyncio.run(review_once(settings, decision))
    print(json.dumps(out, ensure_ascii=True))
    return EXIT_FAILED if out["verdict"] == "error" else EXIT_OK


async def review_once(settings: Settings, decision: Any) -> dict[str, Any]:
    from torghut.bootstrap import build_reviewer
    from torghut.trading.llm.review_engine import build_review_request

    reviewer = build_reviewer(settings)
    try:
        request = build_review_request(
            decision,
            account=None,
            positions=[],
            market=None,
            recent_decisions=[],
            bounds=reviewer.bounds,
            trading_mode=settings.trading_mode,
            prompt_version=settings.llm_prompt_version,
        )
        outcome = await reviewer.engine.review(decision, request)
    finally:
        await reviewer.provider.aclose()
    response = (outcome.response_json or {}).get("review")
    return {
        "provider": outcome.provider,
        "model": outcome.model,
        "llm_verdict": outcome.llm_verdict.value if outcome.llm_verdict else None,
        "verdict": outcome.verdict.value,
        "reason": outcome.reason,
        "response": response,
        "error": (
            {"code": outcome.error_code, "message": outcome.error_message}
            if outcome.error_code
            else None
        ),
        "usage": outcome.usage.as_dict() if outcome.usage else None,
        "latency_ms": outcome.latency_ms,
        "ttft_ms": outcome.ttft_ms,
    }


def cmd_llm_report(args: argparse.Namespace) -> int:
    from torghut import report
    from torghut.domain import utcnow

    settings = _settings()
    setup_logging(settings, "warning")
    now = utcnow()
    since = report.parse_since(args.since, now)
    criteria = report.Criteria(
        max_error_rate=args.max_error_rate,
        max_p95_ms=args.max_p95_ms,
        min_reviews=args.min_reviews,
    )
    rep = asyncio.run(_build_report(settings, since, now))
    failures = report.evaluate(rep, criteria)
    if args.html:
        try:
            Path(args.html).write_text(report.render_html(rep, failures), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--html: cannot write {args.html}: {exc.strerror}") from None
    print(report.render_json(rep, failures) if args.json else report.render_table(rep, failures))
    return EXIT_FAILED if failures else EXIT_OK


async def _build_report(settings: Settings, since: datetime, until: datetime) -> Any:
    from torghut import report
    from torghut.db.engine import create_engine_from_dsn, session_factory

    engine = create_engine_from_dsn(settings.db_dsn)
    try:
        return await report.build_report(session_factory(engine), since=since, until=until)
    finally:
        await engine.dispose()


def cmd_demo(args: argparse.Namespace) -> int:
    from torghut.bootstrap import freeze_startup_heap
    from torghut.demo import run_demo

    freeze_startup_heap()
    return run_demo(workdir=Path(args.dir) if args.dir else None, keep=args.keep)


# ------------------------------------------------------------------------------------ parser
def _read_file(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{flag}: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{flag}: cannot read {path}: {type(exc).__name__}") from None


def _first_validation_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items = errors(include_url=False)
        if items:
            first = items[0]
            loc = ".".join(str(p) for p in first.get("loc", ())) or "decision"
            return f"{loc}: {first.get('msg')}"
    return str(exc).splitlines()[0]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="torghut", description="Torghut trading service.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="HTTP API plus the trading loop when TRADING_ENABLED=true")
    s.add_argument("--host", help="bind address (default TORGHUT_HOST, 0.0.0.0)")
    s.add_argument("--port", type=int, help="port (default TORGHUT_PORT, 8181)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="the whole system on one machine: no network, no keys")
    d.add_argument("--dir", help="work folder (default: a fresh temporary folder)")
    d.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("replay", help="run recorded signals through the full pipeline")
    r.add_argument("--signals", required=True, metavar="FILE", help="JSON Lines signal file")
    r.add_argument("--verbose", action="store_true", help="log at TORGHUT_LOG_LEVEL")
    r.set_defaults(func=cmd_replay)

    llm = sub.add_parser("llm", help="the LLM review gate")
    lsub = llm.add_subparsers(dest="llm_command", required=True, parser_class=_Parser)
    lr = lsub.add_parser("review", help="review one decision; prints one JSON object")
    lr.add_argument("--decision", required=True, metavar="FILE", help="decision JSON, or -")
    lr.set_defaults(func=cmd_llm_review)
    rp = lsub.add_parser("report", help="rollout readiness from the audit rows")
    rp.add_argument("--since", default="24h", help="window start: 24h, 90m, 7d or ISO 8601")
    rp.add_argument("--max-error-rate", type=float, help="fail above this error share (0..1)")
    rp.add_argument("--max-p95-ms", type=float, help="fail above this p95 latency")
    rp.add_argument("--min-reviews", type=int, help="fail below this many reviews")
    rp.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    rp.add_argument("--html", metavar="FILE", help="also write a one-page HTML report")
    rp.set_defaults(func=cmd_llm_report)

    db = sub.add_parser("db", help="database")
    dsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    up = dsub.add_parser("upgrade", help="apply migrations (Alembic) to head")
    up.set_defaults(func=cmd_db_upgrade)

    # Listed for --help only: main() hands `dev-gateway ...` to the gateway's own parser.
    sub.add_parser("dev-gateway", help="a local Jangar-compatible gateway (see its --help)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["dev-gateway"]:
            # The gateway owns its options (and its --help); hand them over untouched.
            from torghut import devgateway

            return devgateway.main(args_list[1:])
        args = build_parser().parse_args(args_list)
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(_one_line(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, InputError) as exc:
        print(f"torghut: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        # The database is down or not migrated: one line, no SQL dump, no traceback.
        print(f"torghut: database error: {_database_problem(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _database_problem(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        first += " (run `torghut db upgrade`)"
    try:
        secrets = load_settings().secrets()
    except ConfigError:
        secrets = []
    return redact(first, secrets)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or REDACTED


if __name__ == "__main__":
    sys.exit(main())
