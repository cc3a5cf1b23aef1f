"""What the page derives from settings and values (web/page.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from torghut.config import load_settings
from torghut.web.page import gate_stage, templates

GATEWAY = {"JANGAR_BASE_URL": "http://jangar.test"}


@pytest.mark.parametrize(
    ("env", "number"),
    [
        ({}, 0),
        ({"LLM_ENABLED": "true", **GATEWAY}, 1),
        ({"LLM_ENABLED": "true", "LLM_SHADOW_MODE": "false", **GATEWAY}, 3),
        ({"LLM_ENABLED": "true", "LLM_SHADOW_MODE": "false", "TRADING_MODE": "live", **GATEWAY}, 4),
    ],
)
def test_the_gate_stage_is_the_runbooks(env: dict[str, str], number: int) -> None:
    assert gate_stage(load_settings(env, None)).number == number


def test_filters_and_autoescaping() -> None:
    env = templates()
    render = env.from_string("{{ q | qty }} {{ m | money }} {{ s | ago }} {{ text }}").render
    out = render(q=Decimal("1E+1"), m=Decimal("-1234.5"), s=5400, text="<b>x</b>")
    assert out == "10 -1,234.50 1.5 h &lt;b&gt;x&lt;/b&gt;"
