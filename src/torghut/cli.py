"""`torghut`: the command line. The only place that turns errors into exit codes and prints.

Exit codes: 0 success; 1 the work ran and failed; 2 bad usage, input or configuration (one
line on stderr, no traceback)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeGuard

from torghut.errors import REDACTED, ConfigError, InputError, TorghutError, redact
from torghut.logs import RedactingFilter, always, setup_logging, startup_banner

__all__ = ["RedactingFilter", "build_parser", "main", "setup_logging"]

if TYPE_CHECKING:
    # Settings pull in pydantic-settings and SQLAlchemy: a tenth of a second `--help` and
    # bad usage need not pay. Every command imports what it uses when it runs (asyncio too:
    # a quarter of what `--help` would import).
    import socket

    from sqlalchemy.exc import SQLAlchemyError

    from torghut.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A decision file is a few hundred bytes; past this it is not one (`/dev/zero`, a 20 MB text).
DECISION_MAX_BYTES = 1 << 20
DEFAULT_MAX_SHARES = 10_000  # TRADING_MAX_SHARES_PER_ORDER's default (CONTRACT §8)


class UsageError(TorghutError):
    pass


class NoDatabase(TorghutError):
    """A read-only command pointed at a SQLite file that does not exist: say so rather than
    create an empty one."""


class _VersionAction(argparse.Action):
    """`--version`, reading the build only when asked (argparse's own wants the string when
    the parser is built)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        from torghut.build import version_line

        print(version_line())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep stderr.
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _settings() -> Settings:
    from torghut.config import load_settings

    return load_settings()


# ---------------------------------------------------------------------------------- commands
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from torghut.db.engine import upgrade

    settings = _settings()
    setup_logging(settings)
    upgrade(settings.db_dsn)
    always(f"database at head: {settings.redacted_dsn()}", event="db_upgrade")
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
    import asyncio

    try:
        return asyncio.run(_serve(settings, host, port, listener))
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here so that a bad host or a port in use is one
    line and exit 2 (uvicorn would log a traceback and exit 3); uvicorn serves on it."""
    import socket

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
    import asyncio

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
        # After every check that is one line and exit 2: the service is really starting.
        startup_banner(settings, "serve")
        app = create_app(container)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
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
    startup_banner(settings, "replay")
    import asyncio

    from torghut.bootstrap import freeze_startup_heap
    from torghut.replay import run_replay

    freeze_startup_heap()
    progress = ReplayProgress(sys.stderr, enabled=settings.log_format == "text")
    summary = asyncio.run(run_replay(settings, path, on_cycle=progress.update))
    progress.finish(summary)
    print(json.dumps(summary, ensure_ascii=True, sort_keys=False))
    if summary.get("halted"):
        print(
            "torghut: trading is halted on this database (POST /trading/halt); no signal "
            "was read; POST /trading/resume lifts it",
            file=sys.stderr,
        )
        return EXIT_FAILED
    # An incomplete run left signals unprocessed (their decisions could not be finished).
    return EXIT_OK if summary["complete"] else EXIT_FAILED


class ReplayProgress:
    """Counts on stderr while a replay runs, rewritten in place at most five times a second,
    only when stderr is a terminal (and the log is text); one final line in any case."""

    INTERVAL_SECONDS = 0.2

    def __init__(self, out: TextIO, *, enabled: bool = True) -> None:
        self.out = out
        self.live = enabled and out.isatty()
        self.started = time.monotonic()
        self.shown = -self.INTERVAL_SECONDS  # the first update shows at once
        self.signals = self.decisions = self.submitted = self.rejected = 0

    def update(self, result: Any) -> None:
        self.signals += result.signals
        self.decisions += result.decisions
        self.submitted += result.submitted
        self.rejected += sum(result.rejected.values())
        now = time.monotonic()
        if self.live and now - self.shown >= self.INTERVAL_SECONDS:
            self.shown = now
            rate = self.signals / max(now - self.started, 1e-9)
            self.out.write(
                f"\rreplay: {self.signals} signals ({rate:,.0f}/s), {self.decisions} decisions, "
                f"{self.submitted} submitted, {self.rejected} rejected"
            )
            self.out.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        if self.live:
            self.out.write("\r\x1b[K")  # clear the progress line
        if summary.get("halted"):
            return  # nothing was read: the halt's own line is the last word
        rejected = sum(summary["rejected"].values())
        line = (
            f"replay {'complete' if summary['complete'] else 'INCOMPLETE'}: "
            f"{summary['signals']} signals, {summary['decisions']} decisions, "
            f"{summary['submitted']} submitted, {rejected} rejected in "
            f"{summary['duration_ms'] / 1000:.1f} s"
        )
        always(line, event="replay_done", summary=summary)


def require_a_gateway(settings: Settings) -> None:
    """Nothing says where to send a review: name the usual missing piece (Jangar's URL), not
    the OpenAI key the settings' fallback provider would ask for."""
    chosen = "llm_provider" in settings.model_fields_set
    if chosen or settings.jangar_base_url or settings.openai_api_key or settings.openai_base_url:
        return
    raise ConfigError(
        "JANGAR_BASE_URL",
        "is required for a review (or set LLM_PROVIDER=openai and OPENAI_API_KEY)",
    )


def cmd_llm_review(args: argparse.Namespace) -> int:
    settings = _anonymized(_settings(), args)
    setup_logging(settings, "warning")
    require_a_gateway(settings)
    raw = _read_capped(args.decision, "--decision", DECISION_MAX_BYTES)
    max_shares = getattr(settings, "trading_max_shares_per_order", DEFAULT_MAX_SHARES)
    decision = parse_decision(raw, max_shares=Decimal(str(max_shares)))
    signals = None
    if args.signals:
        signals = Path(args.signals)
        if not signals.is_file():
            raise InputError(f"--signals: no such file: {signals}")
    import asyncio

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
    import asyncio

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
    print(report.render_json(rep, readiness) if args.json else report.render_table(rep, readiness))
    # Not ready, or nothing checked (NO CRITERIA): a gate that cannot pass without evidence.
    return EXIT_OK if readiness.ready else EXIT_FAILED


def require_existing_database(dsn: str) -> None:
    """Read-only commands create nothing: SQLite would create a missing file on connect."""
    from sqlalchemy import make_url

    url = make_url(dsn)
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return
    if not Path(path).exists():
        raise NoDatabase(f"no database at {path} (DB_DSN; `torghut db upgrade` creates one)")


async def _build_report(settings: Settings, since: datetime, until: datetime) -> Any:
    from torghut import report
    from torghut.db.engine import create_engine_from_dsn, session_factory

    require_existing_database(settings.db_dsn)
    engine = create_engine_from_dsn(settings.db_dsn)
    try:
        return await report.build_report(session_factory(engine), since=since, until=until)
    finally:
        await engine.dispose()


def cmd_llm_eval(args: argparse.Namespace) -> int:
    import asyncio

    from torghut.evaluation import render
    from torghut.evaluation.command import clickhouse_access, run_eval
    from torghut.evaluation.evaluate import gate_failures

    settings = _settings()
    setup_logging(settings, "warning")
    signals = Path(args.signals) if args.signals else None
    if signals is not None and not signals.is_file():
        raise InputError(f"--signals: no such file: {signals}")
    clickhouse = None if signals is not None else clickhouse_access(settings)
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
        rep = asyncio.run(
            run_eval(
                settings.db_dsn,
                signals,
                horizons=args.horizons,
                cost_bps=args.cost_bps,
                since=since,
                seed=args.seed,
                clickhouse=clickhouse,
            )
        )
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


# The command whose start-up is a target (issue 16): main() builds its parser alone.
REVIEW_COMMAND = ("llm", "review")


def _wanted(command: Sequence[str], *path: str) -> bool:
    """Whether the parser restricted to `command` has the subcommand at `path`."""
    return all(i >= len(command) or command[i] == name for i, name in enumerate(path))


def _add_anonymize(parser: argparse.ArgumentParser) -> None:
    """The flag of every command that sends reviews (`serve`, `replay`, `llm review`)."""
    parser.add_argument(
        "--anonymize",
        action="store_true",
        help="send the reviewer tokens for symbols and dates shifted by weeks",
    )


def build_parser(command: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line. With `command` (e.g. `("llm", "review")`), only the parsers on its way
    are built, each as the full parser has it: a command line that starts with `command` is
    parsed, refused and helped alike (tests/e2e/test_cli_startup.py), without making the other
    parsers (a millisecond of `llm review`'s start-up)."""
    p = _Parser(
        prog="torghut",
        description="Torghut trading service: signals to decisions, deterministic risk, an LLM "
        "review through Jangar, broker orders, an audit trail. Settings come from the "
        "environment and .env (README, Configuration).",
        epilog="Exit codes: 0 success, 1 the work ran and failed, 2 bad usage, input or "
        "configuration (one line on stderr).",
    )
    p.add_argument(
        "--version", action=_VersionAction, help="print the version and build commit, then exit"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    if _wanted(command, "serve"):
        s = sub.add_parser(
            "serve",
            help="HTTP API plus the trading loop when TRADING_ENABLED=true",
            description="Brings the database to head, then serves the HTTP API (/trading/*, "
            "/metrics, /healthz, /readyz) and, with TRADING_ENABLED=true, runs the trading loop "
            "(one leader per database). Stops cleanly on SIGTERM.",
        )
        s.add_argument("--host", help="bind address (default TORGHUT_HOST, 0.0.0.0)")
        s.add_argument("--port", type=_port, help="port, 1..65535 (default TORGHUT_PORT, 8181)")
        _add_anonymize(s)
        s.set_defaults(func=cmd_serve)

    if _wanted(command, "demo"):
        d = sub.add_parser(
            "demo",
            help="the whole system on one machine: no network, no keys",
            description="Starts a local Jangar-compatible gateway and replays the bundled signals "
            "through the full pipeline twice on SQLite (the review in shadow mode, then "
            "enforcing), printing each run's JSON summary and llm report. Ignores the environment; "
            "needs no network and no keys.",
        )
        d.add_argument("--dir", help="work folder (default: a fresh temporary folder)")
        d.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
        d.set_defaults(func=cmd_demo)

    if _wanted(command, "replay"):
        r = sub.add_parser(
            "replay",
            help="run recorded signals through the full pipeline",
            description="Reads a JSON Lines signal file through strategy, risk, review and the "
            "simulated broker (never a real one), writing to DB_DSN; prints one JSON summary line. "
            "Progress goes to stderr when it is a terminal; a final line always.",
        )
        r.add_argument("--signals", required=True, metavar="FILE", help="JSON Lines signal file")
        r.add_argument("--verbose", action="store_true", help="log at TORGHUT_LOG_LEVEL")
        _add_anonymize(r)
        r.set_defaults(func=cmd_replay)

    if _wanted(command, "llm"):
        llm = sub.add_parser(
            "llm",
            help="the LLM review gate",
            description="Check the review gate: one review end to end, or the rollout readiness "
            "of the recorded reviews.",
        )
        lsub = llm.add_subparsers(dest="llm_command", required=True, parser_class=_Parser)
    # Each `llm` subcommand wanted implies `llm` wanted: `lsub` is made above.
    if _wanted(command, "llm", "review"):
        lr = lsub.add_parser(
            "review",
            help="review one decision; prints one JSON object",
            description="Sends one decision through the configured provider and policy (whatever "
            "LLM_ENABLED says); writes no audit row, places no order. Exit 0, 1 on a review error, "
            "2 on bad input.",
        )
        lr.add_argument("--decision", required=True, metavar="FILE", help="decision JSON, or -")
        lr.add_argument(
            "--signals",
            metavar="FILE",
            help="JSON Lines signals: the bar history up to the decision's time",
        )
        _add_anonymize(lr)
        lr.set_defaults(func=cmd_llm_review)
    if _wanted(command, "llm", "report"):
        rp = lsub.add_parser(
            "report",
            help="rollout readiness from the audit rows",
            description="Reads the review audit rows of a window (read only: creates nothing) and "
            "prints verdicts, errors, latency and breaker openings; exit 1 when a criterion fails.",
        )
        rp.add_argument("--since", default="24h", help="window start: 24h, 90m, 7d or ISO 8601")
        rp.add_argument(
            "--max-error-rate",
            type=_rate,
            help="fail above this error share, in [0, 1] (0.01 is 1 %%)",
        )
        rp.add_argument(
            "--max-p95-ms", type=_milliseconds, help="fail above this p95 latency (ms, >= 0)"
        )
        rp.add_argument(
            "--min-reviews",
            type=_count,
            help="fail below this many reviews (>= 0); never READY with fewer",
        )
        rp.add_argument("--json", action="store_true", help="one JSON object instead of a table")
        rp.add_argument("--html", metavar="FILE", help="also write a one-page HTML report")
        rp.set_defaults(func=cmd_llm_report)

    if _wanted(command, "llm", "eval"):
        ev = lsub.add_parser(
            "eval",
            help="were the verdicts right? forward returns of reviews",
            description="Forward returns of the reviewed decisions in DB_DSN at each horizon, "
            "signed by side and net of costs: per verdict, the veto value with a bootstrap 95 %% "
            "interval against a random-veto baseline, the adjust value and the confidence's "
            "calibration (README, Reading llm eval).",
        )
        ev.add_argument(
            "--signals",
            metavar="FILE",
            help="JSON Lines signals: the price source (else the bars of CLICKHOUSE_URL)",
        )
        ev.add_argument("--horizons", default="5m,30m,1d", help="comma-separated, e.g. 5m,30m,1d")
        ev.add_argument("--cost-bps", type=float, default=2.0, help="cost per trade in bps (2)")
        ev.add_argument("--since", help="decisions from: 24h, 7d or ISO 8601 (default: all)")
        ev.add_argument("--seed", type=int, default=0, help="seed of the bootstraps (0)")
        ev.add_argument("--json", action="store_true", help="one JSON object instead of a table")
        ev.add_argument("--html", metavar="FILE", help="also write a one-page HTML report")
        ev.add_argument(
            "--min-veto-value-bps",
            type=float,
            metavar="X",
            help="exit 1 when a horizon's veto value lower bound is below X",
        )
        ev.set_defaults(func=cmd_llm_eval)

    if _wanted(command, "db"):
        db = sub.add_parser("db", help="database", description="The database named by DB_DSN.")
        dsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
        up = dsub.add_parser(
            "upgrade",
            help="apply migrations (Alembic) to head",
            description="Applies the Alembic migrations to DB_DSN up to head (serve, replay and "
            "demo do it on start; the cluster runs it as a PreSync Job).",
        )
        up.set_defaults(func=cmd_db_upgrade)

    if _wanted(command, "dev-gateway"):
        # Listed for --help only: main() hands `dev-gateway ...` to the gateway's own parser.
        sub.add_parser(
            "dev-gateway",
            help="a local Jangar-compatible gateway (see its --help)",
            description="See `torghut dev-gateway --help`.",
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["dev-gateway"]:
            # The gateway owns its options (and its --help); hand them over untouched.
            from torghut import devgateway

            return devgateway.main(args_list[1:])
        command = REVIEW_COMMAND if tuple(args_list[:2]) == REVIEW_COMMAND else ()
        args = build_parser(command).parse_args(args_list)
        code: int = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, inside this try
        return code
    except BrokenPipeError:
        # `torghut llm report --json | head -c 10`: the reader has what it wanted. No
        # traceback; stdout goes to /dev/null so that the flush at exit cannot fail again.
        _discard_stdout()
        return EXIT_FAILED
    except NoDatabase as exc:
        print(f"torghut: database error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as exc:
        print(_one_line(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, InputError) as exc:
        print(f"torghut: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except TorghutError as exc:
        # The work ran and could not finish (a signal file that cannot be indexed, ...).
        print(f"torghut: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        # The database is down or not migrated: one line, no SQL dump, no traceback.
        print(f"torghut: database error: {_database_problem(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _discard_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _is_database_error(exc: BaseException) -> TypeGuard[SQLAlchemyError]:
    """A SQLAlchemy error, without importing SQLAlchemy: a process that never imported it
    cannot have raised one of its errors."""
    module = sys.modules.get("sqlalchemy.exc")
    return module is not None and isinstance(exc, module.SQLAlchemyError)


def _database_problem(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        first += " (run `torghut db upgrade`)"
    from torghut.config import load_settings

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
