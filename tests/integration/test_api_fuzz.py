"""Schemathesis against the running API (issue 12): every operation of the OpenAPI document,
with generated parameters, over a real socket on both databases; each response must match the
document (status code, content type, body schema) and never be a server error.

Bounded for CI: a few examples per operation, no stateful phase, each request with a timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from tests.conftest import drop_pg_schema, make_pg_schema_dsn, postgres_unavailable
from torghut.bootstrap import Container, build_container
from torghut.config import load_settings
from torghut.db.engine import upgrade
from torghut.main import create_app

EXAMPLES_PER_OPERATION = 25


class _ServerThread(threading.Thread):
    """The service (API only, no trading loop) on 127.0.0.1 in its own event loop."""

    def __init__(self, dsn: str, token: str | None = None) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.token = token
        self.server: uvicorn.Server | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        # Reads open (TORGHUT_API_PUBLIC_READS): the fuzzing must reach the operations, not
        # stop at the token check.
        env = {"DB_DSN": self.dsn, "TORGHUT_API_PUBLIC_READS": "true"}
        if self.token is not None:
            env["TORGHUT_API_TOKEN"] = self.token
        container = await build_container(load_settings(env, env_file=None))
        try:
            app = create_app(container, run_scheduler=False)
            config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
            self.server = uvicorn.Server(config)
            serving = asyncio.create_task(self.server.serve())
            while not self.server.started and not serving.done():  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.02)
            self.ready.set()
            await serving
        finally:
            await container.aclose()

    @property
    def url(self) -> str:
        assert self.server is not None
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"


def _serve_api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    token: str | None = None,
) -> Iterator[str]:
    schema_name = None
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'torghut.db'}"
    else:
        reason = postgres_unavailable()
        if reason:
            pytest.skip(reason)
        dsn, schema_name = make_pg_schema_dsn()
    upgrade(dsn)
    thread = _ServerThread(dsn, token)
    thread.start()
    thread.ready.wait(60)
    if thread.error is not None:
        raise thread.error
    try:
        yield thread.url
    finally:
        if thread.server is not None:
            thread.server.should_exit = True
        thread.join(30)
        if schema_name:
            drop_pg_schema(schema_name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    yield from _serve_api(request, tmp_path_factory)


TOKEN = "fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def token_api_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The service with TORGHUT_API_TOKEN set: its state changes are on."""
    yield from _serve_api(request, tmp_path_factory, TOKEN)


# The read operations of the document, taken from the app without running it (building the
# app touches no container); each test fuzzes one against the running service. Schemathesis'
# own pytest loader is not used: it sets a private attribute pytest 9 no longer has.
_DOCUMENT = create_app(cast(Container, None), run_scheduler=False).openapi()
OPERATIONS = sorted(f"GET {path}" for path, item in _DOCUMENT["paths"].items() if "get" in item)
WRITES = sorted(f"POST {path}" for path, item in _DOCUMENT["paths"].items() if "post" in item)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_answers_as_documented(api_url: str, operation: str) -> None:
    method, path = operation.split(" ", 1)
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", timeout=10)
    target = schema[path][method]

    @given(case=target.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        case.call_and_validate(base_url=api_url, timeout=10)

    fuzz()


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize("bearer", ["right", "wrong", "none"])
def test_every_state_change_answers_as_documented(
    token_api_url: str, operation: str, bearer: str
) -> None:
    """Generated bodies with the right token, a wrong one and none: a documented answer
    (200, 422 naming the field, 401), never a server error."""
    method, path = operation.split(" ", 1)
    schema = schemathesis.openapi.from_url(f"{token_api_url}/openapi.json", timeout=10)
    target = schema[path][method]
    presented = {"right": TOKEN, "wrong": "not-" + TOKEN}.get(bearer)
    headers = {} if presented is None else {"Authorization": f"Bearer {presented}"}
    statuses: set[int] = set()

    @given(case=target.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        response = case.call(base_url=token_api_url, headers=headers, timeout=10)
        case.validate_response(response)
        statuses.add(response.status_code)

    fuzz()
    if bearer == "right":
        assert statuses & {200}, statuses  # some generated body was a valid one
    else:
        assert statuses == {401}, statuses  # no body gets past a missing or wrong token


def test_the_document_has_the_read_operations() -> None:
    assert {
        "GET /healthz",
        "GET /readyz",
        "GET /trading/status",
        "GET /trading/decisions",
        "GET /metrics",
    } <= set(OPERATIONS)
    # What the service answers to a bad parameter is what the document says.
    errors = [
        item["get"]["responses"]["422"]["content"]["application/json"]["schema"]
        for item in _DOCUMENT["paths"].values()
        if "get" in item and "422" in item["get"]["responses"]
    ]
    assert errors and all(e == {"$ref": "#/components/schemas/ErrorBody"} for e in errors)
    assert {"POST /trading/halt", "POST /trading/resume", "POST /signin"} <= set(WRITES)


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_since_outside_utc_range_is_422_not_500(api_url: str, since: str) -> None:
    import httpx

    for path in ("/trading/decisions", "/trading/executions", "/trading/reviews"):
        response = httpx.get(f"{api_url}{path}", params={"since": since}, timeout=10)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"].startswith("invalid since:")
