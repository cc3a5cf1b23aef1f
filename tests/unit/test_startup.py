"""Start-up shortcuts (issue 16) that must not change what is accepted or trusted: a plain
SQLite URL is checked without SQLAlchemy, and a plain-HTTP Jangar's client skips loading the
CA bundle it never uses."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import make_url

from torghut.config import _PLAIN_SQLITE, load_settings
from torghut.errors import ConfigError, ReviewError
from torghut.trading.llm.jangar import JangarConfig, JangarProvider

TLS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "tls"


@given(
    driver=st.sampled_from(["", "+pysqlite", "+aiosqlite", "+x_1"]),
    path=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)
def test_a_url_the_shortcut_accepts_is_one_sqlalchemy_accepts(driver: str, path: str) -> None:
    dsn = f"sqlite{driver}:///{path}"
    if _PLAIN_SQLITE.fullmatch(dsn):
        url = make_url(dsn)
        assert url.port is None
        assert load_settings({"DB_DSN": dsn}, None).db_dsn == dsn


@pytest.mark.parametrize(
    "dsn",
    ["sqlite://host:port/t.db", "sqlite://:x/t.db?x", "postgresql://u@h:notaport/db"],
)
def test_a_bad_url_is_still_refused_by_sqlalchemys_parser(dsn: str) -> None:
    with pytest.raises(ConfigError, match="DB_DSN: is not a valid database URL"):
        load_settings({"DB_DSN": dsn}, None)


async def _models_over_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = json.dumps({"object": "list", "data": [{"id": "gpt-5.3-codex"}]}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # the client refused the certificate
    finally:
        writer.close()


async def test_an_https_jangar_is_still_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    """https:// keeps httpx's default context: a private CA is refused unless trusted
    (SSL_CERT_FILE, as httpx reads it), and accepted then."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server.key")
    server = await asyncio.start_server(_models_over_tls, "127.0.0.1", 0, ssl=tls)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            monkeypatch.delenv(var, raising=False)
        refusing = JangarProvider(JangarConfig(base_url=url, max_retries=0))
        try:
            with pytest.raises(ReviewError, match=r"(?i)certificate"):
                await refusing.served_models()
        finally:
            await refusing.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(TLS_DIR / "ca.pem"))
        trusting = JangarProvider(JangarConfig(base_url=url, max_retries=0))
        try:
            assert await trusting.served_models() == ["gpt-5.3-codex"]
        finally:
            await trusting.aclose()
    finally:
        server.close()
        await server.wait_closed()
