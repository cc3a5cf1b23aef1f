"""The HTTP API of `torghut serve` (CONTRACT §5): `create_app(container)`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from torghut import report
from torghut.bootstrap import Container
from torghut.db import repo, results_query
from torghut.db.engine import session_factory
from torghut.domain import Book, Verdict, as_utc, utcnow
from torghut.errors import InputError
from torghut.trading import quarantine
from torghut.trading.halt import MAX_REASON_CHARS
from torghut.trading.results import Results
from torghut.web.auth import READ_COOKIE, ApiAuth, AuthError
from torghut.web.page import REFRESH_SECONDS, gate_stage, lag_seconds, templates

log = logging.getLogger("torghut.api")

Limit = Annotated[int, Query(ge=1, le=500, description="1..500")]
_SINCE_YEARS = r"^(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-"
# Documented as an RFC 3339 date-time of years 2..9998, which every offset keeps inside
# 1..9999 once in UTC; the API also reads other ISO 8601 forms, and answers 422 for a time
# that leaves that range (9999-12-31T23:59:59-01:00).
Since = Annotated[
    str | None,
    Query(
        description="ISO 8601 datetime (years 2..9998)",
        json_schema_extra={"format": "date-time", "pattern": _SINCE_YEARS},
    ),
]
# The database check of /readyz must answer a probe quickly, whatever holds the pool.
READY_DB_TIMEOUT_SECONDS = 2.0


def parse_since(value: str | None) -> datetime | None:
    """ISO 8601 only (CONTRACT §5): pydantic would also take Unix numbers, which an operator
    typing `since=2026` would not mean."""
    if value is None:
        return None
    try:
        # A valid ISO time may still leave datetime's range once moved to UTC
        # (9999-12-31T23:59:59-01:00): a bad parameter too, never a 500.
        return as_utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "since"),
                    "msg": "must be an ISO 8601 datetime within years 1..9999 in UTC",
                    "type": "value_error",
                }
            ]
        ) from None


# No control characters: PostgreSQL refuses a NUL in text (a 500 the fuzzing found).
Symbol = Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]
# The `llm report` window and criteria as query parameters of /llm/report.
ReportSince = Annotated[
    str | None,
    Query(
        description="window start: a duration (24h, 90m, 7d, 2w, 30s); an ISO 8601 datetime "
        "in the past is read too",
        json_schema_extra={"pattern": r"^[1-9][0-9]{0,3}[smhdw]$"},
    ),
]
Rate = Annotated[float | None, Query(ge=0, le=1, description="a share in [0, 1]")]
Millis = Annotated[float | None, Query(ge=0)]
Count = Annotated[int | None, Query(ge=0)]
# `llm eval`'s horizons and costs as query parameters of /llm/eval.
Horizons = Annotated[
    str,
    Query(
        max_length=200,
        description="forward-return horizons, comma-separated: a number and s, m, h or d",
        json_schema_extra={"pattern": r"^[1-9][0-9]{0,4}[smhd](,[1-9][0-9]{0,4}[smhd]){0,9}$"},
    ),
]
CostBps = Annotated[float, Query(ge=0, le=10_000, description="cost per trade, basis points")]


class ControlRequest(BaseModel):
    """The body of `POST /trading/halt` and `/trading/resume`."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, pattern=r"\S")


def _static_dir() -> str:
    from importlib import resources

    return str(resources.files("torghut.web") / "static")


class ProblemDetail(BaseModel):
    parameter: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the API: one line, and for a bad parameter the details."""

    error: str
    detail: list[ProblemDetail] | None = None


class ReadyBody(BaseModel):
    status: str
    checks: dict[str, str]
    failing: list[str] | None = None


_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_ERROR = {"$ref": "#/components/schemas/ErrorBody"}
# Refusals of a guarded route (web/auth.py): JSON, or the sign-in page for a browser.
_REFUSED = {
    "content": {
        "application/json": {"schema": _ERROR},
        "text/html": {"schema": {"type": "string"}},
    },
}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token", **_REFUSED},
    403: {"description": "No token configured (reads not public)", **_REFUSED},
}
# A state change's refusals: always JSON (no sign-in page for a POST).
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Missing or wrong bearer token",
        "content": {"application/json": {"schema": _ERROR}},
    },
    403: {
        "description": "No TORGHUT_API_TOKEN configured: state changes are off",
        "content": {"application/json": {"schema": _ERROR}},
    },
}
_BROKER_ERRORS: dict[int | str, dict[str, Any]] = {
    **_READ_ERRORS,
    503: {
        "description": "The broker does not answer",
        "content": {"application/json": {"schema": _ERROR}},
    },
}

_EVAL_ERRORS: dict[int | str, dict[str, Any]] = {
    **_READ_ERRORS,
    409: {
        "description": "No price source (no signal file, no CLICKHOUSE_URL)",
        "content": {"application/json": {"schema": _ERROR}},
    },
    502: {
        "description": "The price source (ClickHouse) failed",
        "content": {"application/json": {"schema": _ERROR}},
    },
}


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents its own 422 body (`HTTPValidationError`); ours is `ErrorBody`, so
    the document says what the service really returns (tests/integration/test_api_fuzz.py)."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None:
                answer["content"] = {"application/json": {"schema": ref}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def create_app(container: Container, *, run_scheduler: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if container.reviewer is not None:
            # Start-up: is LLM_MODEL served? Readiness says so until it is (model_check.py).
            problem = await container.reviewer.model_check.problem()
            if problem:
                log.warning("%s", problem)
        if run_scheduler and container.settings.trading_enabled:
            container.scheduler.start()
        try:
            yield
        finally:
            await container.scheduler.stop()

    # No /docs or /redoc: their pages load Swagger's assets from a CDN, blank without one.
    app = FastAPI(
        title="torghut", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )

    @functools.cache
    def auth() -> ApiAuth:
        # Built on first use: the app is also built without a container (its OpenAPI document).
        token = container.settings.torghut_api_token
        return ApiAuth(
            token=token.get_secret_value() if token else None,
            public_reads=container.settings.torghut_api_public_reads,
        )

    def read_access(request: Request) -> None:
        auth().require_read(request)

    def write_access(request: Request) -> None:
        auth().require_write(request)

    Read = [Depends(read_access)]
    Write = [Depends(write_access)]
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # One error shape for every refusal: {"error": ...}.
        return JSONResponse(
            status_code=exc.status_code, content={"error": exc.detail}, headers=exc.headers
        )

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            # A browser gets a sign-in page, not JSON.
            page = (
                templates()
                .get_template("signin.html")
                .render(message=exc.detail, token_configured=auth().token is not None)
            )
            return HTMLResponse(page, status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(
            status_code=exc.status_code, content={"error": exc.detail}, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One clear message per bad parameter, naming it; never echo a whole body back.
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body")]
            problems.append({"parameter": ".".join(loc) or "request", "message": err.get("msg")})
        first = problems[0] if problems else {"parameter": "request", "message": "invalid"}
        return JSONResponse(
            status_code=422,
            content={
                "error": f"invalid {first['parameter']}: {first['message']}",
                "detail": problems,
            },
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=ReadyBody,
        responses={503: {"model": ReadyBody, "description": "Not ready"}},
    )
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(READY_DB_TIMEOUT_SECONDS):
                async with container.engine.connect() as conn:
                    await conn.execute(text("select 1"))
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = f"failing: no answer within {READY_DB_TIMEOUT_SECONDS:g}s"
        except Exception as exc:
            checks["database"] = f"failing: {type(exc).__name__}"
        if container.reviewer is not None:
            problem = await container.reviewer.model_check.problem()
            checks["llm_model"] = (
                "ok"
                if problem is None
                else problem
                if problem.startswith("unknown")
                else f"failing: {problem}"
            )
        if container.settings.trading_enabled:
            # Ready means progress, not a ticking loop (issue 12): the scheduler says why not.
            problem = container.scheduler.readiness()
            checks["trading_loop"] = "ok" if problem is None else f"failing: {problem}"
        # "unknown" informs without failing (model_check.py says why).
        failing = [k for k, v in checks.items() if v != "ok" and not v.startswith("unknown")]
        ok = not failing
        body: dict[str, Any] = {"status": "ok" if ok else "failing", "checks": checks}
        if failing:
            body["failing"] = failing
        return JSONResponse(status_code=200 if ok else 503, content=body)

    async def _quarantine_summary() -> dict[str, Any]:
        try:
            return await quarantine.summary(container.db)
        except Exception as exc:  # the status page must answer while the database does not
            return {"batches": None, "last": None, "error": f"unavailable: {type(exc).__name__}"}

    async def halt_state() -> dict[str, Any]:
        try:
            return (await container.halt.refresh()).as_dict()
        except Exception:
            log.exception("halt state unreadable")
            # The last state seen, said to be so: the page must still load.
            return {**container.halt.state.as_dict(), "stale": True}

    async def signal_lag() -> dict[str, Any]:
        progress = await results_query.signal_progress(container.db)
        lag = lag_seconds(progress.last_signal_at)
        return {
            "last_signal_at": progress.last_signal_at.isoformat()
            if progress.last_signal_at
            else None,
            "lag_seconds": round(lag, 3) if lag is not None else None,
        }

    @app.get("/trading/status", dependencies=Read, responses=_READ_ERRORS)
    async def trading_status() -> dict[str, Any]:
        s = container.settings
        loop = container.scheduler.snapshot()
        totals = container.pipeline.totals
        reviewer = container.reviewer
        circuit: dict[str, Any] = (
            reviewer.breaker.snapshot()
            if reviewer
            else {"state": "closed", "open_until": None, "recent_error_count": 0}
        )
        return {
            "enabled": s.trading_enabled,
            "mode": s.trading_mode.value,
            "running": loop["running"],
            "leader": loop["leader"],
            "last_run_at": loop["last_run_at"],
            "last_error": loop["last_error"],
            "last_error_at": loop["last_error_at"],
            "failed_cycles": loop["failed_cycles"],
            "stalled_cycles": loop["stalled_cycles"],
            "quarantine": await _quarantine_summary(),
            "halt": await halt_state(),
            "kill_switch": s.trading_kill_switch,
            "broker": container.broker.name,
            "gate_stage": gate_stage(s).number,
            "signals": await signal_lag(),
            "metrics": {
                "cycles": loop["cycles"],
                "signals": totals.signals,
                "decisions": totals.decisions,
                "submitted": totals.submitted,
                "rejected": dict(totals.rejected),
                "reviews": dict(totals.reviews),
                "reviews_in_flight": container.pipeline.reviews_in_flight,
                "last_reconcile_at": loop["last_reconcile_at"],
            },
            "llm": {
                "enabled": s.llm_enabled,
                "provider": s.provider.value,
                "model": s.llm_model,
                "shadow_mode": s.llm_shadow_mode,
                "fail_mode": s.fail_mode.value,
                "prompt_version": s.llm_prompt_version,
                "circuit": circuit,
            },
        }

    def _filter(
        symbol: str | None, since: str | None, limit: int, verdict: str | None = None
    ) -> repo.ListFilter:
        return repo.ListFilter(
            symbol=symbol, since=parse_since(since), limit=limit, verdict=verdict
        )

    @app.get("/trading/decisions", dependencies=Read, responses=_READ_ERRORS)
    async def decisions(
        symbol: Symbol = None, since: Since = None, limit: Limit = 100
    ) -> list[dict[str, Any]]:
        return await repo.list_decisions(container.db, _filter(symbol, since, limit))

    @app.get("/trading/executions", dependencies=Read, responses=_READ_ERRORS)
    async def executions(
        symbol: Symbol = None, since: Since = None, limit: Limit = 100
    ) -> list[dict[str, Any]]:
        return await repo.list_executions(container.db, _filter(symbol, since, limit))

    @app.get("/trading/reviews", dependencies=Read, responses=_READ_ERRORS)
    async def reviews(
        symbol: Symbol = None,
        since: Since = None,
        limit: Limit = 100,
        verdict: Verdict | None = None,
    ) -> list[dict[str, Any]]:
        f = _filter(symbol, since, limit, verdict.value if verdict else None)
        return await repo.list_reviews(container.db, f)

    @app.post("/trading/halt", dependencies=Write, responses=_WRITE_ERRORS)
    async def halt(body: ControlRequest) -> dict[str, Any]:
        """Stop trading from the next decision on; stored, so restarts keep it."""
        state = await container.halt.halt(body.reason.strip())
        return {"halt": state.as_dict()}

    @app.post("/trading/resume", dependencies=Write, responses=_WRITE_ERRORS)
    async def resume(body: ControlRequest) -> dict[str, Any]:
        state = await container.halt.resume(body.reason.strip())
        return {"halt": state.as_dict()}

    async def current_results() -> tuple[Book, Results]:
        try:
            book = await container.broker.get_book()
        except Exception as exc:
            # The broker is down or slow (its own deadline ran out): say so, not "internal".
            log.warning("broker unavailable for the API: %s", type(exc).__name__)
            raise HTTPException(
                status_code=503, detail=f"broker unavailable: {type(exc).__name__}"
            ) from None
        return book, await results_query.current_results(container.db, book)

    @app.get("/trading/account", dependencies=Read, responses=_BROKER_ERRORS)
    async def account() -> dict[str, Any]:
        book, results = await current_results()
        return {
            "broker": container.broker.name,
            "cash": float(book.account.cash),
            "equity": float(book.account.equity),
            "buying_power": float(book.account.buying_power),
            "open_orders": len(book.open_orders),
            "results": results.as_dict(),
        }

    @app.get("/trading/positions", dependencies=Read, responses=_BROKER_ERRORS)
    async def positions() -> list[dict[str, Any]]:
        """The broker's positions, each with its unrealised P&L and the strategies holding it
        (from the fills recorded here)."""
        book, results = await current_results()
        by_symbol: dict[str, list[dict[str, Any]]] = {}
        for h in results.holdings:
            by_symbol.setdefault(h.symbol, []).append(
                {
                    "strategy_id": h.strategy_id,
                    "qty": float(h.qty),
                    "avg_cost": float(h.avg_cost),
                    "unrealised_pnl": float(round(h.unrealised_pnl, 2)),
                }
            )
        return [
            {
                "symbol": p.symbol,
                "qty": float(p.qty),
                "avg_entry_price": float(p.avg_entry_price),
                "market_value": float(p.market_value),
                "unrealised_pnl": float(round(p.market_value - p.qty * p.avg_entry_price, 2)),
                "strategies": by_symbol.get(p.symbol, []),
            }
            for p in book.positions
        ]

    @app.get("/trading/pnl", dependencies=Read, responses=_BROKER_ERRORS)
    async def pnl() -> dict[str, Any]:
        _book, results = await current_results()
        return results.as_dict()

    def _report_since(since: str | None) -> datetime:
        try:
            return report.parse_since(since or "24h", utcnow())
        except InputError as exc:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "since"),
                        "msg": str(exc).removeprefix("--since: "),
                        "type": "value_error",
                    }
                ]
            ) from None

    async def _report(
        since: str | None, criteria: report.Criteria
    ) -> tuple[report.Report, report.Readiness]:
        rep = await report.build_report(
            session_factory(container.engine), since=_report_since(since), until=utcnow()
        )
        return rep, report.evaluate(rep, criteria)

    def _criteria(
        max_error_rate: float | None, max_p95_ms: float | None, min_reviews: int | None
    ) -> report.Criteria:
        # The CLI's criteria, as query parameters; without any the report says NO CRITERIA.
        return report.Criteria(
            max_error_rate=max_error_rate, max_p95_ms=max_p95_ms, min_reviews=min_reviews
        )

    @app.get("/llm/report.json", dependencies=Read, responses=_READ_ERRORS)
    async def llm_report_json(
        since: ReportSince = None,
        max_error_rate: Rate = None,
        max_p95_ms: Millis = None,
        min_reviews: Count = None,
    ) -> dict[str, Any]:
        rep, readiness = await _report(since, _criteria(max_error_rate, max_p95_ms, min_reviews))
        return report.as_dict(rep, readiness)

    @app.get(
        "/llm/report",
        dependencies=Read,
        response_class=HTMLResponse,
        responses={200: _HTML, **_READ_ERRORS},
    )
    async def llm_report_html(
        since: ReportSince = None,
        max_error_rate: Rate = None,
        max_p95_ms: Millis = None,
        min_reviews: Count = None,
    ) -> HTMLResponse:
        rep, readiness = await _report(since, _criteria(max_error_rate, max_p95_ms, min_reviews))
        return HTMLResponse(report.render_html(rep, readiness))

    async def _eval(
        since: str | None, horizons: str, cost_bps: float
    ) -> tuple[dict[str, Any], list[str]]:
        """`llm eval` of the reviews stored here, priced from this service's own signals: the
        replay file it reads, else the ClickHouse bars (CLICKHOUSE_URL)."""
        from torghut.evaluation.clickhouse import PriceSourceError
        from torghut.evaluation.command import clickhouse_access, evaluate_reviews
        from torghut.evaluation.prices import parse_horizons
        from torghut.trading.signals import ReplaySignalSource

        try:
            parse_horizons(horizons)
        except InputError as exc:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "horizons"),
                        "msg": str(exc).removeprefix("--horizons: "),
                        "type": "value_error",
                    }
                ]
            ) from None
        source = container.source
        signals = source.path if isinstance(source, ReplaySignalSource) else None
        clickhouse = None if signals is not None else clickhouse_access(container.settings)
        if signals is None and clickhouse is None:
            raise HTTPException(
                status_code=409,
                detail="no price source: the service reads no signal file and CLICKHOUSE_URL "
                "is not set (torghut llm eval --signals FILE evaluates offline)",
            )
        try:
            rep = await evaluate_reviews(
                container.db,
                signals,
                horizons=horizons,
                cost_bps=cost_bps,
                since=None if since is None else _report_since(since),
                clickhouse=clickhouse,
            )
        except PriceSourceError as exc:
            raise HTTPException(status_code=502, detail=f"price source: {exc}") from None
        except InputError as exc:
            # The signal file went missing or holds no price: the service's problem, said.
            raise HTTPException(status_code=409, detail=f"price source: {exc}") from None
        return rep, []

    @app.get("/llm/eval.json", dependencies=Read, responses=_EVAL_ERRORS)
    async def llm_eval_json(
        since: ReportSince = None, horizons: Horizons = "5m,30m,1d", cost_bps: CostBps = 2.0
    ) -> Response:
        from torghut.evaluation import render

        rep, failures = await _eval(since, horizons, cost_bps)
        return Response(render.render_json(rep, failures), media_type="application/json")

    @app.get(
        "/llm/eval",
        dependencies=Read,
        response_class=HTMLResponse,
        responses={200: _HTML, **_EVAL_ERRORS},
    )
    async def llm_eval_html(
        since: ReportSince = None, horizons: Horizons = "5m,30m,1d", cost_bps: CostBps = 2.0
    ) -> HTMLResponse:
        from torghut.evaluation import render

        rep, failures = await _eval(since, horizons, cost_bps)
        return HTMLResponse(render.render_html(rep, failures))

    @app.post("/signin", responses=_WRITE_ERRORS)
    async def signin(request: Request) -> JSONResponse:
        """Bearer token in, a read-only cookie out (see web/auth.py)."""
        if auth().token is None:
            raise AuthError(403, "no TORGHUT_API_TOKEN is configured: nothing to sign in to")
        if not auth().bearer_ok(request):
            raise AuthError(401, "wrong token")
        response = JSONResponse({"signed_in": True})
        response.set_cookie(
            READ_COOKIE,
            auth().read_cookie_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.get(
        "/", dependencies=Read, response_class=HTMLResponse, responses={200: _HTML, **_READ_ERRORS}
    )
    async def page() -> HTMLResponse:
        s = container.settings
        reviewer = container.reviewer
        progress = await results_query.signal_progress(container.db)
        try:
            book, results = await current_results()
            broker_problem = None
        except HTTPException as exc:
            # The page still shows the halt, the gate and the decisions.
            book, results, broker_problem = None, None, str(exc.detail)
        context = {
            "broker_problem": broker_problem,
            "settings": s,
            "stage": gate_stage(s),
            "loop": container.scheduler.snapshot(),
            "halt": await halt_state(),
            "circuit": reviewer.breaker.snapshot() if reviewer else None,
            "progress": progress,
            "lag": lag_seconds(progress.last_signal_at),
            "book": book,
            "results": results,
            "decisions": await results_query.latest_decisions(container.db, 25),
            "mix": await results_query.verdict_mix(container.db),
            "refresh_seconds": REFRESH_SECONDS,
            "broker_name": container.broker.name,
            "token_configured": auth().token is not None,
            "now": utcnow(),
        }
        return HTMLResponse(templates().get_template("page.html").render(**context))

    @app.get("/metrics", response_class=Response, responses={200: _TEXT})
    async def metrics() -> Response:
        # The halt gauge as stored now, on every replica (a standby runs no cycle to read it);
        # a database that does not answer at once leaves the last value, never the scrape.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(READY_DB_TIMEOUT_SECONDS):
                await container.halt.refresh()
        return Response(container.metrics.render(), media_type=container.metrics.content_type)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # No traceback, DSN or secret in a response: the log has the details.
        log.exception("unhandled error in API")
        if isinstance(exc, HTTPException):
            return JSONResponse(status_code=exc.status_code, content={"error": exc.detail})
        return JSONResponse(status_code=500, content={"error": "internal error"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            # ErrorBody is used by no route's signature: add it by hand.
            schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = (
                ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            defs = schema["components"]["schemas"]["ErrorBody"].pop("$defs", {})
            schema["components"]["schemas"].update(defs)
            app.openapi_schema = _document_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
