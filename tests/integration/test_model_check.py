"""The configured model must be served (issue 13): `GET {base}/models` on both providers, and
`/readyz` naming the model when it is not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import Database
from tests.integration.conftest_llm import SECRET
from tests.integration.rawserver import RawServer, respond
from torghut.bootstrap import build_container
from torghut.config import load_settings
from torghut.errors import ReviewError, ReviewErrorCode
from torghut.main import create_app
from torghut.ports import ReviewProvider
from torghut.trading.llm.jangar import MODELS_PATH, JangarConfig, JangarProvider
from torghut.trading.llm.model_check import ModelCheck, ModelMissing, check_model
from torghut.trading.llm.openai import OpenAIConfig, OpenAIProvider


def listing(*ids: str) -> list[Any]:
    body = json.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
    return respond(body.encode(), content_type="application/json")


def provider_for(kind: str, url: str, model: str) -> ReviewProvider:
    if kind == "jangar":
        return JangarProvider(JangarConfig(base_url=url, api_key=SECRET, model=model))
    return OpenAIProvider(OpenAIConfig(api_key=SECRET, base_url=url + "/v1", model=model))


@pytest.mark.parametrize("kind", ["jangar", "openai"])
async def test_the_model_list_is_read(kind: str) -> None:
    async with RawServer([listing("gpt-5.3-codex", "other")]) as server:
        provider = provider_for(kind, server.url, "gpt-5.3-codex")
        try:
            await check_model(provider)
            with pytest.raises(ModelMissing) as info:
                await check_model(provider_for(kind, server.url, "gpt-9"))
        finally:
            await provider.aclose()
    assert "'gpt-9'" in str(info.value) and "LLM_MODEL" in str(info.value)
    request = server.requests[0]
    assert request.method == "GET"
    assert request.path == (MODELS_PATH if kind == "jangar" else "/v1/models")
    assert request.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("kind", ["jangar", "openai"])
@pytest.mark.parametrize(
    ("script", "code"),
    [
        (respond(b"<html>no</html>", content_type="text/html"), ReviewErrorCode.PROTOCOL_ERROR),
        (respond(b'{"data": 5}', content_type="application/json"), ReviewErrorCode.PROTOCOL_ERROR),
        (respond(b"nope", 404, content_type="text/plain"), ReviewErrorCode.HTTP_ERROR),
    ],
)
async def test_no_model_list_is_a_review_error(
    kind: str, script: list[Any], code: ReviewErrorCode
) -> None:
    async with RawServer([script]) as server:
        provider = provider_for(kind, server.url, "m")
        try:
            with pytest.raises(ReviewError) as info:
                await check_model(provider)
        finally:
            await provider.aclose()
    assert info.value.code is code


async def test_model_check_keeps_its_answer_for_a_while() -> None:
    now = [0.0]
    calls = []

    async def check(_: ReviewProvider) -> None:
        calls.append(now[0])
        raise ModelMissing("LLM_MODEL 'x' is not served by jangar")

    model_check = ModelCheck(
        JangarProvider(JangarConfig(base_url="http://127.0.0.1:9")),
        clock=lambda: now[0],
        check=check,
    )
    assert await model_check.problem() == "LLM_MODEL 'x' is not served by jangar"
    now[0] = 30
    await model_check.problem()
    now[0] = 61
    await model_check.problem()
    assert calls == [0.0, 61]


@pytest.fixture
async def serve(database: Database) -> AsyncIterator[Any]:
    """Start `serve`'s app (no scheduler) against a gateway URL; yields its URL."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None], Any]] = []

    async def start(gateway_url: str) -> str:
        settings = load_settings(
            {"DB_DSN": database.dsn, "JANGAR_BASE_URL": gateway_url, "LLM_ENABLED": "true"},
            env_file=None,
        )
        container = await build_container(settings)
        app = create_app(container, run_scheduler=False)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
        )
        task = asyncio.create_task(server.serve())
        servers.append((server, task, container))
        while not server.started:
            await asyncio.sleep(0.02)
            assert not task.done()
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield start
    for server, task, container in servers:
        server.should_exit = True
        await task
        await container.aclose()


async def test_readiness_fails_naming_a_model_the_gateway_does_not_serve(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with RawServer([listing("other-model")]) as gateway:
        url = await serve(gateway.url)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{url}/readyz")
    assert response.status_code == 503
    body = response.json()
    assert "llm_model" in body["failing"]
    assert "gpt-5.3-codex" in body["checks"]["llm_model"]
    assert any("gpt-5.3-codex" in r.getMessage() for r in caplog.records)  # at start-up too


async def test_readiness_is_green_when_the_model_is_served(serve: Any) -> None:
    async with RawServer([listing("gpt-5.3-codex")]) as gateway:
        url = await serve(gateway.url)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["llm_model"] == "ok"


async def test_readiness_stands_when_the_list_cannot_be_had(serve: Any) -> None:
    """A gateway that is down is the clocks' and the breaker's business: `unknown`, still 200."""
    from tests.integration.conftest_llm import free_port

    url = await serve(f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["llm_model"].startswith("unknown: ")
