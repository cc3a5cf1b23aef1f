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
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from torghut.bootstrap import Container
from torghut.db import repo
from torghut.domain import Verdict, as_utc

log = logging.getLogger("torghut.api")

Limit = Annotated[int, Query(ge=1, le=500, description="1..500")]
Since = Annotated[str | None, Query(description="ISO 8601 datetime")]
# The database check of /readyz must answer a probe quickly, whatever holds the pool.
READY_DB_TIMEOUT_SECONDS = 2.0


def parse_since(value: str | None) -> datetime | None:
    """ISO 8601 only (CONTRACT §5): pydantic would also take Unix numbers, which an operator
    typing `since=2026` would not mean."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("query", "since"), "msg": "must be an ISO 8601 datetime",
              "type": "value_error"}]
        ) from None
    return as_utc(parsed)
Symbol = Annotated[str | None, Query(min_length=1, max_length=32)]


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

    @app.get("/readyz")
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
            checks["trading_loop"] = "ok" if container.scheduler.fresh() else (
                "failing: no cycle within three poll intervals"
            )
        # "unknown" informs without failing (model_check.py says why).
        failing = [k for k, v in checks.items() if v != "ok" and not v.startswith("unknown")]
        ok = not failing
        body: dict[str, Any] = {"status": "ok" if ok else "failing", "checks": checks}
        if failing:
            body["failing"] = failing
        return JSONResponse(status_code=200 if ok else 503, content=body)

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

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(container.metrics.render(), media_type=container.metrics.content_type)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # No traceback, DSN or secret in a response: the log has the details.
        log.exception("unhandled error in API")
        if isinstance(exc, HTTPException):
            return JSONResponse(status_code=exc.status_code, content={"error": exc.detail})
        return JSONResponse(status_code=500, content={"error": "internal error"})

    return app
