"""Exactly-once trading across processes: two `torghut serve` on one PostgreSQL database (one
leads, the other stands by and takes over), and a service killed mid-batch then restarted, on
SQLite and on PostgreSQL.

Every process here is a real `torghut serve` (or `torghut dev-gateway`) subprocess; the test
only writes the signal file, polls `/trading/status` and reads the database. Each wait is
bounded by a generous deadline; every subprocess is killed in `finally`. Logs go to files in
the test's folder (a pipe nobody reads would block a chatty process) and are quoted when an
assertion fails.

A slow dev gateway (`--latency-seconds`) with the review gate enforced (`LLM_SHADOW_MODE=false`,
`LLM_FAIL_MODE=veto`) makes a batch take a while, so a kill lands in the middle of one.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.e2e.cli import clean_env
from torghut.db.engine import Database, sync_engine
from torghut.domain import BrokerOrder, OrderRequest, TradeDecision, decision_hash
from torghut.trading.brokers import SimBroker
from torghut.trading.signals import parse_signal_line
from torghut.trading.strategy import DEFAULT_STRATEGY, StrategyDefaults, evaluate

DEADLINE = 60.0  # seconds, for anything that should take a few
POLL_INTERVAL = "0.5"  # TRADING_POLL_INTERVAL_SECONDS of every serve here
SIM_CASH = Decimal(1_000_000)  # every buy (about 1000 each) passes risk with room to spare
PRICE = 10.0  # qty floor(1000 / 10) = 100, notional 1000 = TRADING_MAX_NOTIONAL_PER_TRADE

T = TypeVar("T")


# ------------------------------------------------------------------------------- signal file
@dataclass(frozen=True)
class SignalFile:
    path: Path
    hashes: frozenset[str]  # the decision hash every line must produce, once
    last_symbol: str
    last_seq: int

    @property
    def count(self) -> int:
        return len(self.hashes)


def write_signals(path: Path, n: int) -> SignalFile:
    """`n` lines, each a buy (MACD above its signal, RSI below 35) on its own symbol at its own
    minute, so each line is exactly one decision that passes risk. The expected decision hashes
    are computed from the file with the default strategy, as the service does."""
    start = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    lines = [
        json.dumps(
            {
                "event_ts": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                "symbol": f"X{i:04d}",
                "timeframe": "1Min",
                "macd": 0.5,
                "macd_signal": 0.1,
                "rsi14": 30.0,
                "price": PRICE,
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hashes = set()
    last = None
    for lineno, line in enumerate(lines, start=1):
        sig = parse_signal_line(line, lineno)
        decision = evaluate(DEFAULT_STRATEGY, sig, equity=SIM_CASH, defaults=StrategyDefaults())
        assert decision is not None and decision.action.value == "buy"
        hashes.add(decision_hash(decision))
        last = sig
    assert last is not None and len(hashes) == n
    return SignalFile(path, frozenset(hashes), last.symbol, last.seq)


# -------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A subprocess whose stdout and stderr go to a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        self._file = self.log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "torghut.cli", *args],
            env=clean_env(env),
            cwd=cwd,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.popen.pid}>"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(
            self.text().splitlines()[-lines:]
        )

    def sigkill(self) -> None:
        if self.alive():
            self.popen.kill()
        self.popen.wait(timeout=15)

    def sigterm(self, timeout: float = 20) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)

    def close(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(timeout=15)
        self._file.close()


class Procs:
    """Every process of a test, killed and reported together."""

    def __init__(self, stack: ExitStack, cwd: Path) -> None:
        self.stack = stack
        self.cwd = cwd
        self.all: list[Proc] = []

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, args, env, self.cwd)
        self.all.append(proc)
        self.stack.callback(proc.close)
        return proc

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.all)


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    procs: Procs,
    *,
    timeout: float = DEADLINE,
    alive: tuple[Proc, ...] = (),
    every: float = 0.1,
    state: Callable[[], object] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` (and `state()`, when
    given) after `timeout`, or at once when one of `alive` exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        exited = [proc.name for proc in alive if not proc.alive()]
        if exited or time.monotonic() > deadline:
            why = f"{exited[0]} exited" if exited else f"timed out after {timeout:.0f}s"
            seen = f"\nstate: {state()}" if state is not None else ""
            pytest.fail(f"{why} while waiting for {what}{seen}\n{procs.logs()}")
        time.sleep(every)


def start_gateway(procs: Procs, latency: float) -> str:
    gw = procs.start(
        "dev-gateway", ["dev-gateway", "--port", "0", "--latency-seconds", str(latency)], {}
    )

    def url() -> str | None:
        found = re.search(r"dev-gateway listening on (http://\S+)", gw.text())
        return found.group(1) if found else None

    return wait_for("the dev gateway to listen", url, procs, timeout=30, alive=(gw,))


def start_serve(
    procs: Procs,
    name: str,
    *,
    dsn: str,
    signals: Path,
    gateway: str,
    concurrency: int,
) -> tuple[Proc, int]:
    port = free_port()
    env = {
        "DB_DSN": dsn,
        "TORGHUT_PORT": str(port),
        "TORGHUT_HOST": "127.0.0.1",
        "TORGHUT_API_PUBLIC_READS": "true",  # the test polls /trading/status
        "TRADING_ENABLED": "true",
        "TRADING_POLL_INTERVAL_SECONDS": POLL_INTERVAL,
        "TRADING_SIGNALS_PATH": str(signals),
        "TRADING_BATCH_SIZE": "20",
        # Recorded signals, any time of day: neither their age nor the session is under test.
        "TRADING_MAX_SIGNAL_AGE_SECONDS": "315360000",
        "TRADING_CALENDAR": "always",
        "TRADING_SIM_CASH": str(SIM_CASH),
        "LLM_ENABLED": "true",
        "JANGAR_BASE_URL": gateway,
        "LLM_SHADOW_MODE": "false",
        "LLM_FAIL_MODE": "veto",
        "LLM_MAX_CONCURRENCY": str(concurrency),
    }
    return procs.start(name, ["serve"], env), port


def status(port: int) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/trading/status", timeout=5)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------------- database
@dataclass(frozen=True)
class Snapshot:
    decisions: int
    planned: int
    rejected: int
    executions: int
    sim_orders: int
    cursor: tuple[str, int] | None

    def done(self, signals: SignalFile) -> bool:
        return (
            self.cursor == (signals.last_symbol, signals.last_seq)
            and self.decisions == signals.count
            and self.planned == 0
        )


def snapshot(db: Engine) -> Snapshot:
    with db.connect() as conn:

        def count(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar_one())

        cursors = conn.execute(text("select symbol, seq from signal_cursors")).all()
        assert len(cursors) <= 1, cursors  # one replay source, one cursor
        return Snapshot(
            decisions=count("select count(*) from trade_decisions"),
            planned=count("select count(*) from trade_decisions where status = 'planned'"),
            rejected=count("select count(*) from trade_decisions where status = 'rejected'"),
            executions=count("select count(*) from executions"),
            sim_orders=count("select count(*) from sim_orders"),
            cursor=(cursors[0].symbol, int(cursors[0].seq)) if cursors else None,
        )


def assert_exactly_once(db: Engine, signals: SignalFile) -> None:
    """Every signal made its decision once; every decision sent at most one order, and every
    decision not rejected exactly one; the broker holds exactly the orders recorded."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "select d.decision_hash, d.status, d.reason, e.client_order_id,"
                " e.broker_order_id, o.broker_order_id as sim_broker_order_id"
                " from trade_decisions d"
                " left join executions e on e.trade_decision_id = d.id"
                " left join sim_orders o on o.client_order_id = d.decision_hash"
            )
        ).all()
        dup_hashes = conn.execute(
            text(
                "select decision_hash from trade_decisions group by decision_hash"
                " having count(*) > 1"
            )
        ).all()
        dup_exec = conn.execute(
            text(
                "select trade_decision_id from executions group by trade_decision_id"
                " having count(*) > 1"
            )
        ).all()
        dup_coid = conn.execute(
            text(
                "select client_order_id from executions group by client_order_id"
                " having count(*) > 1"
            )
        ).all()
        orphan_orders = conn.execute(
            text(
                "select o.client_order_id from sim_orders o left join executions e"
                " on e.client_order_id = o.client_order_id where e.id is null"
            )
        ).all()
        executions = int(conn.execute(text("select count(*) from executions")).scalar_one())
        sim_orders = int(conn.execute(text("select count(*) from sim_orders")).scalar_one())
    assert not dup_hashes and not dup_exec and not dup_coid, (dup_hashes, dup_exec, dup_coid)
    # One row per decision: the joins above cannot fan out (unique keys), so this also says
    # "at most one execution and one broker order per decision".
    assert len(rows) == signals.count, f"{len(rows)} rows for {signals.count} signals"
    assert {r.decision_hash for r in rows} == signals.hashes, "a signal was skipped or invented"
    not_final = [r for r in rows if r.status == "planned"]
    assert not not_final, f"{len(not_final)} decisions left planned"
    rejected = [(r.decision_hash, r.reason) for r in rows if r.status == "rejected"]
    assert not rejected, f"every decision here passes risk and review: {rejected[:5]}"
    for r in rows:
        assert r.client_order_id == r.decision_hash, r  # one execution, keyed by the hash
        assert r.sim_broker_order_id is not None, r  # and the broker has that order
        assert r.broker_order_id == r.sim_broker_order_id, r  # the same one: never resubmitted
    submitted = sum(1 for r in rows if r.status != "rejected")
    assert executions == submitted == signals.count
    assert sim_orders == executions
    assert not orphan_orders, f"broker orders no execution records: {orphan_orders[:5]}"


def place_directly(dsn: str, decision: TradeDecision, client_order_id: str) -> BrokerOrder:
    """Send a decision's order to the simulated broker as the pipeline would, without
    recording an execution: the state a crash between the broker's answer and the execution
    write leaves behind."""
    order = OrderRequest.for_decision(decision, client_order_id)

    async def place() -> BrokerOrder:
        db = Database(dsn)
        try:
            broker = SimBroker(db, starting_cash=SIM_CASH)
            return await broker.submit_order(order)
        finally:
            await db.aclose()

    return asyncio.run(place())


@contextmanager
def reader(dsn: str) -> Iterator[Engine]:
    engine = sync_engine(dsn)
    try:
        yield engine
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------ tests
# SQLite too (issue 12: two serves on one file both led): the lock file beside the database.
@pytest.mark.parametrize("db_dsn", ["postgresql", "sqlite"], indirect=True)
def test_two_serves_on_one_database_submit_each_decision_once(db_dsn: str, tmp_path: Path) -> None:
    """Both run: exactly one leads. SIGKILL the leader mid-run: the standby takes over within
    a few poll intervals and finishes; every signal is decided and ordered exactly once. Then
    a fresh standby takes over from a leader stopped with SIGTERM, and submits nothing again.

    (The replay source reads its file once and caches it, so new signals cannot be appended to
    a running service: the handover is tested by killing the leader mid-run instead.)"""
    signals = write_signals(tmp_path / "signals.jsonl", 200)
    with ExitStack() as stack:
        procs = Procs(stack, tmp_path)
        db = stack.enter_context(reader(db_dsn))
        gateway = start_gateway(procs, latency=0.3)
        a, port_a = start_serve(
            procs, "serve-a", dsn=db_dsn, signals=signals.path, gateway=gateway, concurrency=8
        )
        b, port_b = start_serve(
            procs, "serve-b", dsn=db_dsn, signals=signals.path, gateway=gateway, concurrency=8
        )
        serves = {a: port_a, b: port_b}

        def statuses() -> dict[Proc, dict[str, Any]] | None:
            seen = {p: status(port) for p, port in serves.items()}
            both = {p: s for p, s in seen.items() if s is not None}
            if len(both) < 2:
                return None
            leaders = [p for p, s in both.items() if s["leader"]]
            assert len(leaders) <= 1, f"two leaders at once: {both}\n{procs.logs()}"
            if len(leaders) == 1 and all(s["running"] for s in both.values()):
                return both
            return None

        # Both up, one leader, one standby; keep watching until the leader is mid-run.
        first = wait_for("both serves up with one leader", statuses, procs, alive=(a, b))
        leader = next(p for p, s in first.items() if s["leader"])
        standby = b if leader is a else a
        assert first[standby]["running"] is True and first[standby]["leader"] is False

        def mid_run() -> Snapshot | None:
            statuses()  # keeps asserting that there is never a second leader
            snap = snapshot(db)
            # Well under way, with plenty left for the standby.
            return snap if 20 <= snap.executions <= signals.count - 60 else None

        before = wait_for(
            "the leader to be mid-run",
            mid_run,
            procs,
            alive=(a, b),
            every=0.05,
            state=lambda: snapshot(db),
        )
        assert before.executions < signals.count
        standby_status = status(serves[standby])
        assert standby_status is not None and standby_status["leader"] is False
        assert standby_status["metrics"]["decisions"] == 0, "a standby must not trade"

        leader.sigkill()
        killed_at = time.monotonic()

        def took_over() -> bool:
            s = status(serves[standby])
            return bool(s and s["leader"])

        wait_for("the standby to take over", took_over, procs, timeout=20, alive=(standby,))
        takeover = time.monotonic() - killed_at
        assert takeover < 10, f"takeover took {takeover:.1f}s (poll interval {POLL_INTERVAL}s)"

        def finished() -> Snapshot | None:
            snap = snapshot(db)
            return snap if snap.done(signals) and snap.executions == signals.count else None

        wait_for(
            "the standby to finish every signal",
            finished,
            procs,
            alive=(standby,),
            state=lambda: snapshot(db),
        )
        after_takeover = status(serves[standby])
        assert after_takeover is not None and after_takeover["metrics"]["submitted"] > 0
        assert after_takeover["last_error"] is None, after_takeover
        assert_exactly_once(db, signals)

        # A graceful stop hands over too: a new standby leads once the leader exits 0.
        c, port_c = start_serve(
            procs, "serve-c", dsn=db_dsn, signals=signals.path, gateway=gateway, concurrency=8
        )

        def c_stands_by() -> bool:
            s = status(port_c)
            return bool(s and s["running"] and not s["leader"])

        wait_for("the new process to stand by", c_stands_by, procs, alive=(c, standby))
        current = status(serves[standby])
        assert current is not None and current["leader"] is True
        assert standby.sigterm() == 0, procs.logs()

        def c_leads() -> bool:
            s = status(port_c)
            return bool(s and s["leader"] and s["metrics"]["cycles"] >= 1)

        wait_for("the standby to lead after SIGTERM", c_leads, procs, timeout=20, alive=(c,))
        final = status(port_c)
        assert final is not None
        assert final["metrics"]["decisions"] == 0 and final["metrics"]["submitted"] == 0, final
        assert_exactly_once(db, signals)
        assert c.sigterm() == 0, procs.logs()


def test_kill_mid_batch_and_restart_loses_nothing_and_duplicates_nothing(
    db_dsn: str, tmp_path: Path
) -> None:
    """SIGKILL `serve` in the middle of a batch (some executions, some decisions still
    `planned`), restart it, and check that every signal became exactly one decision with
    exactly one execution and one broker order. One of the decisions left planned is also given
    its broker order before the restart (as if the kill had come right after the broker's
    answer): the restarted service must adopt that order, not send a second one."""
    signals = write_signals(tmp_path / "signals.jsonl", 60)
    with ExitStack() as stack:
        procs = Procs(stack, tmp_path)
        db = stack.enter_context(reader(db_dsn))
        gateway = start_gateway(procs, latency=0.3)
        first, _ = start_serve(
            procs, "serve-1", dsn=db_dsn, signals=signals.path, gateway=gateway, concurrency=4
        )

        def mid_batch() -> Snapshot | None:
            snap = snapshot(db)
            return snap if snap.executions >= 5 and snap.planned >= 5 else None

        wait_for(
            "a batch in flight",
            mid_batch,
            procs,
            alive=(first,),
            every=0.05,
            state=lambda: snapshot(db),
        )
        first.sigkill()

        killed = snapshot(db)
        assert 0 < killed.executions < signals.count, killed
        assert killed.planned >= 1, f"the kill should leave a batch unfinished: {killed}"
        assert killed.cursor != (signals.last_symbol, signals.last_seq), killed
        with db.connect() as conn:
            planned = conn.execute(
                text(
                    "select d.decision_hash, d.decision_json from trade_decisions d"
                    " left join sim_orders o on o.client_order_id = d.decision_hash"
                    " where d.status = 'planned' and o.client_order_id is null"
                    " order by d.decision_hash"
                )
            ).all()
            planned_hashes = {
                r.decision_hash
                for r in conn.execute(
                    text("select decision_hash from trade_decisions where status = 'planned'")
                )
            }
        assert planned, "no planned decision without a broker order to adopt"
        raw = planned[0].decision_json
        decision = TradeDecision.model_validate(json.loads(raw) if isinstance(raw, str) else raw)
        adopted_hash = planned[0].decision_hash
        placed = place_directly(db_dsn, decision, adopted_hash)
        assert placed.status == "filled", placed

        second, port = start_serve(
            procs, "serve-2", dsn=db_dsn, signals=signals.path, gateway=gateway, concurrency=4
        )

        def finished() -> Snapshot | None:
            snap = snapshot(db)
            return snap if snap.done(signals) and snap.executions == signals.count else None

        wait_for(
            "the restarted service to finish",
            finished,
            procs,
            alive=(second,),
            state=lambda: snapshot(db),
        )
        final_status = status(port)
        assert final_status is not None and final_status["last_error"] is None, final_status
        assert second.sigterm() == 0, procs.logs()

        assert_exactly_once(db, signals)
        with db.connect() as conn:
            adopted = conn.execute(
                text(
                    "select d.status, e.broker_order_id,"
                    " (select count(*) from sim_orders o where o.client_order_id = :h) as n"
                    " from trade_decisions d join executions e on e.trade_decision_id = d.id"
                    " where d.decision_hash = :h"
                ),
                {"h": adopted_hash},
            ).one()
            left = conn.execute(
                text("select decision_hash, status from trade_decisions"),
            ).all()
        assert adopted.n == 1 and adopted.broker_order_id == placed.broker_order_id, adopted
        assert adopted.status == "filled", adopted
        # Every decision the kill left planned was completed after the restart.
        completed = {r.decision_hash: r.status for r in left if r.decision_hash in planned_hashes}
        assert set(completed) == planned_hashes
        assert set(completed.values()) == {"filled"}, completed
