"""`torghut`: the command line. The only place that turns errors into exit codes and prints.

Exit codes: 0 success; 1 the work ran and failed; 2 bad usage, input or configuration (one
line on stderr, no traceback)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import math
import socket
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from torghut.config import Settings, load_settings
from torghut.errors import REDACTED, ConfigError, InputError, TorghutError, redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A decision file is a few hundred bytes; past this it is not one (`/dev/zero`, a 20 MB text).
DECISION_MAX_BYTES = 1 << 20
DEFAULT_MAX_SHARES = 10_000  # TRADING_MAX_SHARES_PER_ORDER's default (CONTRACT §8)


class UsageError(TorghutError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep stderr.
        raise UsageError(f"{self.prog}: {message} (see --help)")


class RedactingFilter(logging.Filter):
    """Replaces every configured secret in every log line, whoever logged it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = redact(message, self.secrets, limit=None)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
                record.exc_text = redact(text, self.secrets, limit=None)
        return True


def setup_logging(settings: Settings | None, level: str | None = None) -> None:
    name = (level or (settings.torghut_log_level if settings else "info")).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(settings.secrets() if settings else []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
    # The HTTP libraries (the openai SDK's httpx2 too) log requests and peer text at INFO and
    # DEBUG: kept at WARNING whatever TORGHUT_LOG_LEVEL says.
    noisy_loggers = ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "alembic",
                     "uvicorn.access")
    for noisy in noisy_loggers:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


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


def _anonymized(settings: Settings, args: argparse.Namespace) -> Settings:
    """--anonymize: what the reviewer is sent has tokens for symbols and shifted dates."""
    if getattr(args, "anonymize", False):
        return settings.model_copy(update={"llm_anonymize": True})
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _anonymized(_settings(), args)
    setup_logging(settings)
    port = settings.torghut_port if args.port is None else args.port
    host = settings.torghut_host if args.host is None else args.host
    listener = _listen(host, port)  # before anything else: a taken port is a usage error
    try:
        return asyncio.run(_serve(settings, host, port, listener))
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here so that a bad host or a port in use is one
    line and exit 2 (uvicorn would log a traceback and exit 3); uvicorn serves on it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"--host: cannot resolve {host!r}: {exc}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise InputError(f"serve: cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


async def _serve(settings: Settings, host: str, port: int, listener: socket.socket) -> int:
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

    from torghut.bootstrap import build_container, check_startup, freeze_startup_heap
    from torghut.db.engine import upgrade
    from torghut.main import create_app

    freeze_startup_heap()
    await asyncio.to_thread(upgrade, settings.db_dsn)
    container = await build_container(settings)
    try:
        await check_startup(container)
        app = create_app(container)
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
            timeout_graceful_shutdown=10,
        )
        server = _GracefulServer(config)
        await server.serve(sockets=[listener])
        return EXIT_OK if server.started else EXIT_FAILED
    finally:
        await container.aclose()


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _anonymized(_settings(), args)
    setup_logging(settings, "warning" if not args.verbose else None)
    path = Path(args.signals)
    if not path.exists():
        raise InputError(f"--signals: no such file: {path}")
    if not path.is_file():
        raise InputError(f"--signals: not a regular file: {path}")
    from torghut.bootstrap import freeze_startup_heap
    from torghut.replay import run_replay

    freeze_startup_heap()
    summary = asyncio.run(run_replay(settings, path))
    print(json.dumps(summary, ensure_ascii=True, sort_keys=False))
    if summary.get("halted"):
        print("torghut: trading is halted on this database (POST /trading/halt); no signal "
              "was read; POST /trading/resume lifts it", file=sys.stderr)
        return EXIT_FAILED
    # An incomplete run left signals unprocessed (their decisions could not be finished).
    return EXIT_OK if summary["complete"] else EXIT_FAILED


def cmd_llm_review(args: argparse.Namespace) -> int:
    settings = _anonymized(_settings(), args)
    setup_logging(settings, "warning")
    raw = _read_capped(args.decision, "--decision", DECISION_MAX_BYTES)
    max_shares = getattr(settings, "trading_max_shares_per_order", DEFAULT_MAX_SHARES)
    decision = parse_decision(raw, max_shares=Decimal(str(max_shares)))
    signals = None
    if args.signals:
        signals = Path(args.signals)
        if not signals.is_file():
            raise InputError(f"--signals: no such file: {signals}")
    from torghut.dryrun import review_with_context

    out = asyncio.run(review_with_context(settings, decision, signals))
    print(json.dumps(out, ensure_ascii=True))
    return EXIT_FAILED if out["verdict"] == "error" else EXIT_OK


def parse_decision(raw: str, *, max_shares: Decimal) -> Any:
    """The `TradeDecision` of a decision file, checked against the bounds the pipeline keeps
    for its own decisions before anything is sent; `InputError` naming `--decision` and the
    field otherwise, whatever the text holds (tests/unit/test_input_fuzz.py)."""
    from torghut.domain import TradeDecision
    from torghut.limits import check_json_value, check_reviewable

    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"--decision: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise InputError("--decision: nested too deep") from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise InputError(f"--decision: not JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise InputError("--decision: must be one JSON object")
    try:
        check_json_value(data)
    except ValueError as exc:
        raise InputError(f"--decision: {exc}") from None
    try:
        decision = TradeDecision.model_validate(data)
    except Exception as exc:
        raise InputError(f"--decision: {_first_validation_error(exc)}") from None
    try:
        check_reviewable(decision, max_shares=max_shares)
    except ValueError as exc:
        raise InputError(f"--decision: {exc}") from None
    return decision


def cmd_llm_report(args: argparse.Namespace) -> int:
    from torghut import report
    from torghut.domain import utcnow

    settings = _settings()
    setup_logging(settings, "warning")
    now = utcnow()
    try:
        since = report.parse_since(args.since, now)
    except (OverflowError, ValueError):  # a valid ISO time that leaves datetime's range in UTC
        raise InputError(f"--since: {args.since[:60]!r} is out of range") from None
    criteria = report.Criteria(
        max_error_rate=args.max_error_rate,
        max_p95_ms=args.max_p95_ms,
        min_reviews=args.min_reviews,
    )
    rep = asyncio.run(_build_report(settings, since, now))
    readiness = report.evaluate(rep, criteria)
    if args.html:
        try:
            Path(args.html).write_text(report.render_html(rep, readiness), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--html: cannot write {args.html}: {exc.strerror}") from None
    print(
        report.render_json(rep, readiness) if args.json else report.render_table(rep, readiness)
    )
    # Not ready, or nothing checked (NO CRITERIA): a gate that cannot pass without evidence.
    return EXIT_OK if readiness.ready else EXIT_FAILED


async def _build_report(settings: Settings, since: datetime, until: datetime) -> Any:
    from torghut import report
    from torghut.db.engine import create_engine_from_dsn, session_factory

    engine = create_engine_from_dsn(settings.db_dsn)
    try:
        return await report.build_report(session_factory(engine), since=since, until=until)
    finally:
        await engine.dispose()


def cmd_llm_eval(args: argparse.Namespace) -> int:
    from torghut.evaluation import render
    from torghut.evaluation.command import run_eval
    from torghut.evaluation.evaluate import gate_failures

    settings = _settings()
    setup_logging(settings, "warning")
    signals = Path(args.signals) if args.signals else None
    if signals is not None and not signals.is_file():
        raise InputError(f"--signals: no such file: {signals}")
    clickhouse = None
    if signals is None and settings.clickhouse_url:
        from torghut.evaluation.clickhouse import ClickHouseAccess

        password = settings.clickhouse_password
        clickhouse = ClickHouseAccess(
            url=settings.clickhouse_url, username=settings.clickhouse_username,
            password=password.get_secret_value() if password else None,
            timeout_seconds=max(30.0, settings.clickhouse_timeout_seconds),
        )
    gate = args.min_veto_value_bps
    if gate is not None and not math.isfinite(gate):
        raise InputError(f"--min-veto-value-bps: must be a finite number (got {gate})")
    since = None
    if args.since:
        from torghut import report as llm_report
        from torghut.domain import utcnow

        try:
            since = llm_report.parse_since(args.since, utcnow())
        except (OverflowError, ValueError):
            raise InputError(f"--since: {args.since[:60]!r} is out of range") from None
    from torghut.evaluation.clickhouse import PriceSourceError

    try:
        rep = asyncio.run(run_eval(settings.db_dsn, signals, horizons=args.horizons,
                                   cost_bps=args.cost_bps, since=since, seed=args.seed,
                                   clickhouse=clickhouse))
    except PriceSourceError as exc:
        print(f"torghut: llm eval: price source: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    failures = []
    if args.min_veto_value_bps is not None:
        failures = gate_failures(rep, args.min_veto_value_bps)
    if args.html:
        try:
            Path(args.html).write_text(render.render_html(rep, failures), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--html: cannot write {args.html}: {exc.strerror}") from None
    print(render.render_json(rep, failures) if args.json else render.render_table(rep, failures))
    if failures:
        print(f"torghut: llm eval: {failures[0]}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from torghut.bootstrap import freeze_startup_heap
    from torghut.demo import run_demo

    workdir = _work_folder(args.dir) if args.dir else None
    freeze_startup_heap()
    return run_demo(workdir=workdir, keep=args.keep)


def _work_folder(value: str) -> Path:
    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--dir: {value} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".torghut-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--dir: cannot use {value}: {exc.strerror}") from None
    return folder


# ------------------------------------------------------------------------------------ parser
def _read_capped(path: str, flag: str, limit: int) -> str:
    """At most `limit` bytes of a file (or stdin for `-`), as UTF-8: `/dev/zero` or a
    20 MB file is refused after `limit` bytes instead of read into memory."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with Path(path).open("rb") as handle:
                data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{flag}: no such file: {path}") from None
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{flag}: larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{flag}: not UTF-8") from None


def _first_validation_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items = errors(include_url=False)
        if items:
            first = items[0]
            loc = ".".join(str(p) for p in first.get("loc", ())) or "decision"
            return f"{loc}: {first.get('msg')}"
    return str(exc).splitlines()[0]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1..65535)")
    return value


def _finite(text: str, low: float, high: float | None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        span = f"{low:g}..{high:g}" if high is not None else f"a finite number >= {low:g}"
        raise argparse.ArgumentTypeError(f"{text!r} is not in {span}")
    return value


def _rate(text: str) -> float:
    return _finite(text, 0.0, 1.0)


def _milliseconds(text: str) -> float:
    return _finite(text, 0.0, None)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="torghut", description="Torghut trading service.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="HTTP API plus the trading loop when TRADING_ENABLED=true")
    s.add_argument("--host", help="bind address (default TORGHUT_HOST, 0.0.0.0)")
    s.add_argument("--port", type=_port, help="port, 1..65535 (default TORGHUT_PORT, 8181)")
    s.add_argument("--anonymize", action="store_true",
                   help="send the reviewer tokens for symbols and dates shifted by weeks")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="the whole system on one machine: no network, no keys")
    d.add_argument("--dir", help="work folder (default: a fresh temporary folder)")
    d.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("replay", help="run recorded signals through the full pipeline")
    r.add_argument("--signals", required=True, metavar="FILE", help="JSON Lines signal file")
    r.add_argument("--verbose", action="store_true", help="log at TORGHUT_LOG_LEVEL")
    r.add_argument("--anonymize", action="store_true",
                   help="send the reviewer tokens for symbols and dates shifted by weeks")
    r.set_defaults(func=cmd_replay)

    llm = sub.add_parser("llm", help="the LLM review gate")
    lsub = llm.add_subparsers(dest="llm_command", required=True, parser_class=_Parser)
    lr = lsub.add_parser("review", help="review one decision; prints one JSON object")
    lr.add_argument("--decision", required=True, metavar="FILE", help="decision JSON, or -")
    lr.add_argument("--signals", metavar="FILE",
                    help="JSON Lines signals: the bar history up to the decision's time")
    lr.add_argument("--anonymize", action="store_true",
                   help="send the reviewer tokens for symbols and dates shifted by weeks")
    lr.set_defaults(func=cmd_llm_review)
    rp = lsub.add_parser("report", help="rollout readiness from the audit rows")
    rp.add_argument("--since", default="24h", help="window start: 24h, 90m, 7d or ISO 8601")
    rp.add_argument("--max-error-rate", type=_rate,
                    help="fail above this error share, in [0, 1] (0.01 is 1 %%)")
    rp.add_argument("--max-p95-ms", type=_milliseconds,
                    help="fail above this p95 latency (ms, >= 0)")
    rp.add_argument("--min-reviews", type=_count,
                    help="fail below this many reviews (>= 0); never READY with fewer")
    rp.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    rp.add_argument("--html", metavar="FILE", help="also write a one-page HTML report")
    rp.set_defaults(func=cmd_llm_report)

    ev = lsub.add_parser("eval", help="were the verdicts right? forward returns of reviews")
    ev.add_argument("--signals", metavar="FILE",
                    help="JSON Lines signals: the price source (else the bars of CLICKHOUSE_URL)")
    ev.add_argument("--horizons", default="5m,30m,1d", help="comma-separated, e.g. 5m,30m,1d")
    ev.add_argument("--cost-bps", type=float, default=2.0, help="cost per trade in bps (2)")
    ev.add_argument("--since", help="decisions from: 24h, 7d or ISO 8601 (default: all)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the bootstraps (0)")
    ev.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ev.add_argument("--html", metavar="FILE", help="also write a one-page HTML report")
    ev.add_argument("--min-veto-value-bps", type=float, metavar="X",
                    help="exit 1 when a horizon's veto value lower bound is below X")
    ev.set_defaults(func=cmd_llm_eval)

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
    except TorghutError as exc:
        # The work ran and could not finish (a signal file that cannot be indexed, ...).
        print(f"torghut: {_one_line(str(exc))}", file=sys.stderr)
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
    """One line of printable text: input quoted in an error may hold newlines or escape
    sequences that would forge lines or drive the terminal."""
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in flat) or REDACTED


if __name__ == "__main__":
    sys.exit(main())
