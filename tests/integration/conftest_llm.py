"""Helpers shared by the provider tests (imported by them, not collected by pytest)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from torghut.errors import ReviewError, ReviewErrorCode
from torghut.ports import ChatMessage

T = TypeVar("T")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jangar"
SHARED_EXAMPLES = Path("/work/shared/jangar/examples")

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You review trades. Answer with one JSON object."},
    {"role": "user", "content": "Review: buy 5 AAPL at market, price 100.98, cap $5,000."},
]

SECRET = "sk-test-3f9a7c1e5b2d4a6f8e0c"


def example(name: str) -> bytes:
    """A Jangar example body, byte-exact."""
    for folder in (FIXTURES, SHARED_EXAMPLES):
        path = folder / name
        if path.exists():
            return path.read_bytes()
    pytest.skip(f"example {name} not found in {FIXTURES}")


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connects are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def review_error(awaitable: Awaitable[object]) -> ReviewError:
    """The ReviewError the awaitable raises (fails the test if it returns)."""
    with pytest.raises(ReviewError) as info:
        await awaitable
    return info.value


def assert_code(error: ReviewError, code: ReviewErrorCode) -> None:
    assert error.code is code, f"expected {code.value}, got {error.code.value}: {error.message}"


async def wait_until(predicate: object, within: float = 2.0) -> bool:
    """Poll a zero-argument callable until it is true (server-side effects lag a little)."""
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())
