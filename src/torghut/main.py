"""The HTTP API of `torghut serve` (CONTRACT §5): `create_app(container)`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text

from torghut.bootstrap import Container
from torghut.db import repo
from torghut.domain import Verdict, as_utc
from torghut.trading import quarantine

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
            [{"loc": ("query", "since"), "msg": "must be an ISO 8601 datetime within years "
              "1..9999 in UTC", "type": "value_error"}]
        ) from None
Symbol = Annotated[str | None, Query(min_length=1, max_length=32)]


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

    app = FastAPI(title="torghut", version="0.1.0", lifespan=lifespan)

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
            content={"error": f"invalid {first['parameter']}: {first['message']}",
                     "detail": problems},
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyBody,
             responses={503: {"model": ReadyBody, "description": "Not ready"}})
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
                "ok" if problem is None
                else problem if problem.startswith("unknown") else f"failing: {problem}"
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

    @app.get("/trading/status")
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

    @app.get("/trading/decisions")
    async def decisions(
        symbol: Symbol = None, since: Since = None, limit: Limit = 100
    ) -> list[dict[str, Any]]:
        return await repo.list_decisions(container.db, _filter(symbol, since, limit))

    @app.get("/trading/executions")
    async def executions(
        symbol: Symbol = None, since: Since = None, limit: Limit = 100
    ) -> list[dict[str, Any]]:
        return await repo.list_executions(container.db, _filter(symbol, since, limit))

    @app.get("/trading/reviews")
    async def reviews(
        symbol: Symbol = None,
        since: Since = None,
        limit: Limit = 100,
        verdict: Verdict | None = None,
    ) -> list[dict[str, Any]]:
        f = _filter(symbol, since, limit, verdict.value if verdict else None)
        return await repo.list_reviews(container.db, f)

    @app.get("/metrics", response_class=Response, responses={200: _TEXT})
    async def metrics() -> Response:
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
