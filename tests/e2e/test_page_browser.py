"""The operator's page in a real headless browser (Debian's chromium and chromedriver): it
renders, shows a decision a replay made with its review, signs in with the token, and its
halt button halts the service.

Skipped, saying why, where chromium or chromedriver is missing; `TORGHUT_REQUIRE_BROWSER=1`
(set by `.ci/run`, which installs them) turns that skip into a failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cli import clean_env
from tests.integration.test_gate_table import FakeProvider
from torghut.config import load_settings
from torghut.replay import run_replay

TOKEN = "browser-test-token-0123456789"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")


def _find(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    return None


def _require_browser() -> tuple[str, str]:
    chromium, driver = _find(CHROMIUM_CANDIDATES), _find(DRIVER_CANDIDATES)
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (
            f"browser test needs {', '.join(missing)} "
            "(apt-get install chromium chromium-driver; .ci/run does)"
        )
        if os.environ.get("TORGHUT_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)  # CI must not go green by skipping the browser
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    # A driver given by path: Selenium Manager must not go looking on the network.
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _replay_into(dsn: str, tmp_path: Path) -> None:
    signals = tmp_path / "signals.jsonl"
    signals.write_text(
        '{"event_ts": "2026-03-02T15:00:00Z", "symbol": "ZBRA", "timeframe": "1Min", '
        '"macd": 0.4, "macd_signal": 0.1, "rsi14": 28.0, "price": 100.0}\n'
    )
    settings = load_settings(
        {"DB_DSN": dsn, "LLM_ENABLED": "true", "JANGAR_BASE_URL": "http://127.0.0.1:9"}, None
    )
    summary = asyncio.run(run_replay(settings, signals, provider=FakeProvider("approve")))
    assert summary["submitted"] == 1 and summary["reviews"] == {"approve": 1}, summary


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    dsn = f"sqlite:///{tmp_path / 'page.db'}"
    _replay_into(dsn, tmp_path)
    port = _free_port()
    env = clean_env(
        {
            "DB_DSN": dsn,
            "TORGHUT_PORT": str(port),
            "TORGHUT_HOST": "127.0.0.1",
            "TORGHUT_API_TOKEN": TOKEN,
            "TORGHUT_LOG_LEVEL": "warning",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # A guard against a server that never starts, generous for a loaded machine; not a
        # speed check.
        deadline = time.monotonic() + 120
        up = False
        while not up and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                up = httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if not up:
                time.sleep(0.2)
        assert up, "torghut serve did not answer /healthz"
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _wait(driver: Any, condition: Any, what: str, timeout: float = 60) -> Any:
    """Until `condition` holds (the timeout guards against hanging; it is no speed check);
    the page reloads itself, so an element may vanish meanwhile."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition, message=what)


def _text(driver: Any, element_id: str) -> str | None:
    """The element's visible text read in one script call: the page re-renders itself, and
    chromedriver reports a node replaced between find_element and .text as a generic
    WebDriverException ("Node with given id does not belong to the document"), not as a
    stale element, so the find and the read must be one atomic step."""
    value = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : null;",
        element_id,
    )
    return None if value is None else str(value).strip()


def test_the_page_renders_a_replays_decision_and_its_halt_button_halts(
    browser: Any, service: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # Reads are private (no TORGHUT_API_PUBLIC_READS): the browser is asked to sign in.
    browser.get(f"{service}/")
    browser.find_element(By.ID, "signin-token").send_keys(TOKEN)
    browser.find_element(By.ID, "signin-button").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "decisions"), "the page after sign-in")

    # Every read is one script call: the page reloads itself (every 15 s, and after a halt).
    assert _text(browser, "halt-state") == "TRADING"
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#decisions tr.decision'))"
        ".map((r) => r.innerText);"
    )
    assert len(rows) == 1
    row = rows[0]
    assert "ZBRA" in row and "approve" in row and "filled" in row and "fine" in row
    assert "approve 1" in (_text(browser, "verdict-mix") or "")
    assert _text(browser, "equity") == "100,000.00"
    assert "ZBRA" in (_text(browser, "positions") or "")
    # The stylesheet and the script come from the service itself and were applied.
    border = browser.execute_script(
        "return getComputedStyle(document.getElementById('halt-banner')).borderTopStyle;"
    )
    assert border == "solid"
    browser.save_screenshot(str(tmp_path / "page-before-halt.png"))

    browser.find_element(By.ID, "control-token").send_keys(TOKEN)
    browser.find_element(By.ID, "control-reason").send_keys("browser test halt")
    browser.find_element(By.ID, "halt-button").click()
    _wait(
        browser,
        lambda d: _text(d, "halt-state") == "HALTED",
        "the page to show HALTED",
    )
    _wait(
        browser,
        lambda d: _text(d, "halt-reason") == "browser test halt",
        "the halt's reason on the page",
    )
    browser.save_screenshot(str(tmp_path / "page-halted.png"))

    status = httpx.get(
        f"{service}/trading/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ).json()
    assert status["halt"]["halted"] is True and status["halt"]["reason"] == "browser test halt"


def test_a_wrong_token_does_not_halt(browser: Any, service: str) -> None:
    from selenium.webdriver.common.by import By

    auth = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(f"{service}/signin", headers=auth, timeout=5)
    browser.get(f"{service}/")
    browser.find_element(By.ID, "signin-token").send_keys(TOKEN)
    browser.find_element(By.ID, "signin-button").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "control-form"), "the page")
    browser.find_element(By.ID, "control-token").send_keys("not-the-token-0123456789")
    browser.find_element(By.ID, "control-reason").send_keys("should fail")
    browser.find_element(By.ID, "halt-button").click()
    _wait(
        browser,
        lambda d: "refused (401)" in (_text(d, "control-result") or ""),
        "the refusal to show",
    )
    status = httpx.get(f"{service}/trading/status", headers=auth, timeout=5).json()
    assert status["halt"]["halted"] is False
