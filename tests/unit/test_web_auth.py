"""The API token's settings and the bearer/cookie checks (web/auth.py)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from torghut.config import load_settings
from torghut.errors import ConfigError
from torghut.web.auth import READ_COOKIE, ApiAuth, AuthError

TOKEN = "0123456789abcdef-token"


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def test_a_short_token_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"TORGHUT_API_TOKEN": "short-secret"}, None)
    assert "TORGHUT_API_TOKEN" in str(caught.value) and "short-secret" not in str(caught.value)


def test_the_token_is_a_secret_for_redaction() -> None:
    settings = load_settings({"TORGHUT_API_TOKEN": TOKEN}, None)
    assert TOKEN in settings.secrets()
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (TOKEN, False),
        (f"Basic {TOKEN}", False),
        ("Bearer ", False),
        ("", False),
    ],
)
def test_bearer(header: str, ok: bool) -> None:
    auth = ApiAuth(token=TOKEN, public_reads=False)
    assert auth.bearer_ok(request({"Authorization": header} if header else {})) is ok


def test_writes_need_a_configured_token_and_the_bearer() -> None:
    with pytest.raises(AuthError) as off:
        ApiAuth(token=None, public_reads=True).require_write(request({}))
    assert off.value.status_code == 403 and "TORGHUT_API_TOKEN" in str(off.value.detail)
    auth = ApiAuth(token=TOKEN, public_reads=True)
    with pytest.raises(AuthError) as missing:
        auth.require_write(request({}))
    assert missing.value.status_code == 401
    auth.require_write(request({"Authorization": f"Bearer {TOKEN}"}))


def test_the_read_cookie_opens_reads_only_and_is_not_the_token() -> None:
    auth = ApiAuth(token=TOKEN, public_reads=False)
    value = auth.read_cookie_value()
    assert TOKEN not in value
    with_cookie = request({"Cookie": f"{READ_COOKIE}={value}"})
    auth.require_read(with_cookie)
    with pytest.raises(AuthError):
        auth.require_write(with_cookie)
    with pytest.raises(AuthError):
        auth.require_read(request({"Cookie": f"{READ_COOKIE}={value[:-1]}0"}))
    # The cookie value as a bearer token opens nothing.
    with pytest.raises(AuthError):
        auth.require_write(request({"Authorization": f"Bearer {value}"}))
