"""Order recovery as a state machine: what a decision left `planned` by an earlier run needs.
Pure: the caller asks the broker, this module says what follows.

An order is written ahead on its decision (`pending_order_json`) before it is sent, and
cleared when the broker's answer is recorded. A decision found `planned` at the start of a
cycle is therefore in one of these states (`OrderState`), and the broker's answer to "do you
have client order id X?" moves it to one step (`RecoveryStep`):

| state | broker has it | broker does not | cannot be asked |
|---|---|---|---|
| `NEVER_SENT` (no pending order) | `ADOPT` | `DECIDE` (judged afresh) | `WAIT` |
| `SENT` (a pending order we can read) | `ADOPT` | `RESEND` in the window (1) | `WAIT` |
| `UNREADABLE` (a pending order we cannot read) | `ADOPT` | `WAIT` (an operator looks) | `WAIT` |

(1) `WAIT` while orders are stopped (kill switch, trading off); `GIVE_UP` once the last
sending is older than `TRADING_RESEND_WINDOW_SECONDS`.

`WAIT` leaves the decision `planned` (its batch is read again); `GIVE_UP` rejects it as
`broker_no_answer`: an order the broker still does not know that long after its last sending
was never placed, and is not traded at a price decided long ago.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from torghut.domain import OrderRequest

BROKER_NO_ANSWER = "broker_no_answer"


class OrderState(Enum):
    NEVER_SENT = "never_sent"
    SENT = "sent"
    UNREADABLE = "unreadable"


class RecoveryStep(Enum):
    ADOPT = "adopt"  # record the broker's order as this decision's
    RESEND = "resend"  # send exactly the pending order again (same client order id)
    DECIDE = "decide"  # never reached the broker: judged afresh
    WAIT = "wait"  # stays `planned`; asked again next cycle
    GIVE_UP = "give_up"  # rejected, `broker_no_answer`


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """What a `planned` decision's stored row says of its order."""

    state: OrderState
    order: OrderRequest | None = None
    sent_at: datetime | None = None

    @classmethod
    def from_row(cls, pending_order_json: dict[str, Any] | None) -> PendingOrder:
        if not pending_order_json:
            return cls(OrderState.NEVER_SENT)
        try:
            order = OrderRequest.from_json(pending_order_json)
            sent_at = datetime.fromisoformat(str(pending_order_json["sent_at"]))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return cls(OrderState.UNREADABLE)
        return cls(OrderState.SENT, order, sent_at)


def recovery_step(
    pending: PendingOrder,
    *,
    broker_has_it: bool | None,
    now: datetime,
    resend_window: timedelta,
    sending_stopped: bool,
) -> RecoveryStep:
    """The table of the module docstring. `broker_has_it` None: the broker cannot be asked."""
    if broker_has_it is None:
        return RecoveryStep.WAIT
    if broker_has_it:
        return RecoveryStep.ADOPT
    if pending.state is OrderState.NEVER_SENT:
        return RecoveryStep.DECIDE
    if pending.state is OrderState.UNREADABLE:
        return RecoveryStep.WAIT
    if pending.sent_at is not None and now - pending.sent_at > resend_window:
        return RecoveryStep.GIVE_UP
    if sending_stopped:
        # Kill switch, trading off, live not enabled: no order leaves, not even this one. It
        # stays pending: adopted if the first one arrives, re-sent once orders are allowed.
        return RecoveryStep.WAIT
    return RecoveryStep.RESEND
