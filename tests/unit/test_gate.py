"""Every cell of CONTRACT §1's truth table."""

from __future__ import annotations

import pytest

from torghut.domain import EffectiveAction, FailMode, Verdict
from torghut.trading.gate import TRUTH_TABLE, GateColumn, GateDecision, apply_gate

ORIG = EffectiveAction.SUBMITTED_ORIGINAL
ADJ = EffectiveAction.SUBMITTED_ADJUSTED
REJ = EffectiveAction.REJECTED

# (verdict, shadow, fail_mode, reason, error_code, expected)
CELLS = [
    ("approve", True, "pass_through", None, None, GateDecision(ORIG)),
    ("approve", True, "veto", None, None, GateDecision(ORIG)),
    ("approve", False, "pass_through", None, None, GateDecision(ORIG)),
    ("approve", False, "veto", None, None, GateDecision(ORIG)),
    ("adjust", True, "pass_through", None, None, GateDecision(ORIG)),
    ("adjust", True, "veto", None, None, GateDecision(ORIG)),
    ("adjust", False, "pass_through", None, None, GateDecision(ADJ)),
    ("adjust", False, "veto", None, None, GateDecision(ADJ)),
    ("veto", True, "pass_through", "llm_veto", None, GateDecision(ORIG)),
    ("veto", True, "veto", "llm_veto", None, GateDecision(ORIG)),
    ("veto", False, "pass_through", "llm_veto", None, GateDecision(REJ, "llm_veto")),
    ("veto", False, "veto", "llm_veto", None, GateDecision(REJ, "llm_veto")),
    (
        "veto",
        False,
        "veto",
        "llm_confidence_below_min",
        None,
        GateDecision(REJ, "llm_confidence_below_min"),
    ),
    (
        "veto",
        False,
        "pass_through",
        "llm_adjustment_qty_out_of_bounds",
        None,
        GateDecision(REJ, "llm_adjustment_qty_out_of_bounds"),
    ),
    ("veto", False, "veto", None, None, GateDecision(REJ, "llm_veto")),
    ("error", True, "pass_through", "llm_error:timeout", "timeout", GateDecision(ORIG)),
    ("error", True, "veto", "llm_error:timeout", "timeout", GateDecision(ORIG)),
    ("error", False, "pass_through", "llm_error:timeout", "timeout", GateDecision(ORIG)),
    (
        "error",
        False,
        "veto",
        "llm_error:timeout",
        "timeout",
        GateDecision(REJ, "llm_error:timeout"),
    ),
    (
        "error",
        False,
        "veto",
        "llm_error:circuit_open",
        "circuit_open",
        GateDecision(REJ, "llm_error:circuit_open"),
    ),
    ("error", False, "veto", None, None, GateDecision(REJ, "llm_error:unknown")),
]


def _id(cell: tuple[object, ...]) -> str:
    verdict, shadow, fail_mode, reason, _, _ = cell
    column = "shadow" if shadow else f"enforce-{fail_mode}"
    return f"{verdict}-{column}-{reason or 'no-reason'}"


@pytest.mark.parametrize(
    ("verdict", "shadow", "fail_mode", "reason", "error_code", "expected"),
    [pytest.param(*cell, id=_id(cell)) for cell in CELLS],
)
def test_gate_cell(
    verdict: str,
    shadow: bool,
    fail_mode: str,
    reason: str | None,
    error_code: str | None,
    expected: GateDecision,
) -> None:
    decision = apply_gate(
        Verdict(verdict),
        shadow=shadow,
        fail_mode=FailMode(fail_mode),
        reason=reason,
        error_code=error_code,
    )
    assert decision == expected


def test_table_is_complete() -> None:
    assert set(TRUTH_TABLE) == {(v, c) for v in Verdict for c in GateColumn}


def test_shadow_never_blocks_or_changes() -> None:
    assert {
        action for (_, column), action in TRUTH_TABLE.items() if column is GateColumn.SHADOW
    } == {ORIG}
