"""The review gate: CONTRACT §1's truth table as data, and the one function applying it.

| review outcome (after policy) | shadow             | pass_through       | veto               |
|-------------------------------|--------------------|--------------------|--------------------|
| approve                       | submitted_original | submitted_original | submitted_original |
| adjust                        | submitted_original | submitted_adjusted | submitted_adjusted |
| veto                          | submitted_original | rejected           | rejected           |
| error                         | submitted_original | submitted_original | rejected           |

An adjusted order goes back through the risk checks before it is submitted (the pipeline's
job). A rejection keeps its reason: the policy's (`llm_veto`, `llm_confidence_below_min`,
`llm_adjustment_*`) or `llm_error:<code>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from torghut.domain import EffectiveAction, FailMode, Verdict


class GateColumn(StrEnum):
    """The table's columns: shadow mode, else the fail mode in force."""

    SHADOW = "shadow"
    PASS_THROUGH = "pass_through"
    VETO = "veto"


_O = EffectiveAction.SUBMITTED_ORIGINAL
_A = EffectiveAction.SUBMITTED_ADJUSTED
_R = EffectiveAction.REJECTED

TRUTH_TABLE: Mapping[tuple[Verdict, GateColumn], EffectiveAction] = {
    (Verdict.APPROVE, GateColumn.SHADOW): _O,
    (Verdict.APPROVE, GateColumn.PASS_THROUGH): _O,
    (Verdict.APPROVE, GateColumn.VETO): _O,
    (Verdict.ADJUST, GateColumn.SHADOW): _O,
    (Verdict.ADJUST, GateColumn.PASS_THROUGH): _A,
    (Verdict.ADJUST, GateColumn.VETO): _A,
    (Verdict.VETO, GateColumn.SHADOW): _O,
    (Verdict.VETO, GateColumn.PASS_THROUGH): _R,
    (Verdict.VETO, GateColumn.VETO): _R,
    (Verdict.ERROR, GateColumn.SHADOW): _O,
    (Verdict.ERROR, GateColumn.PASS_THROUGH): _O,
    (Verdict.ERROR, GateColumn.VETO): _R,
}

DEFAULT_VETO_REASON = "llm_veto"
ERROR_REASON_PREFIX = "llm_error:"


@dataclass(frozen=True, slots=True)
class GateDecision:
    effective_action: EffectiveAction
    rejection_reason: str | None = None


def gate_column(*, shadow: bool, fail_mode: FailMode) -> GateColumn:
    if shadow:
        return GateColumn.SHADOW
    return GateColumn.VETO if fail_mode is FailMode.VETO else GateColumn.PASS_THROUGH


def error_reason(error_code: str | None) -> str:
    return f"{ERROR_REASON_PREFIX}{error_code or 'unknown'}"


def apply_gate(
    verdict: Verdict,
    *,
    shadow: bool,
    fail_mode: FailMode,
    reason: str | None,
    error_code: str | None,
) -> GateDecision:
    """What happens to the decision, and why it was rejected when it was."""
    action = TRUTH_TABLE[(verdict, gate_column(shadow=shadow, fail_mode=fail_mode))]
    if action is not EffectiveAction.REJECTED:
        return GateDecision(action)
    if verdict is Verdict.ERROR:
        if error_code is None and reason and reason.startswith(ERROR_REASON_PREFIX):
            return GateDecision(action, reason)
        return GateDecision(action, error_reason(error_code))
    return GateDecision(action, reason or DEFAULT_VETO_REASON)


def would_change_order(verdict: Verdict, fail_mode: FailMode) -> bool:
    """Had the gate enforced (shadow off) with `fail_mode`: would this outcome have changed the
    order? The rule the report's shadow disagreements count, read off the table above."""
    column = gate_column(shadow=False, fail_mode=fail_mode)
    return TRUTH_TABLE[(verdict, column)] is not EffectiveAction.SUBMITTED_ORIGINAL
