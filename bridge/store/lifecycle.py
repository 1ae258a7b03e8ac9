"""A delivery's lifecycle: its states, which of them are settled, the kinds of history step.

The states are those an (event, target) pair moves through; the steps are the rows its history
(the `transitions` table) records.

States are `StrEnum`s: the stored strings are their values, and a state read back from the store
(a plain string) compares equal to its member.

    pending --claim--> calling --finish--> retrying | parked      (claimable again)
                                    `----> delivered | already_done   (settled)
    pending --claim--> calling --the target order is another event's--> duplicate (settled)
    delivered --reopen (reconciliation)--> retrying --undo_reopen--> delivered

A history row is one step of a pair. Most record an outcome (the target's answer to one call);
reconciliation and operators write rows too, marked by how their detail begins. `step_kind` says
which kind a row is; `unmarked` is the same rule as SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

import sqlalchemy as sa


class DeliveryState(StrEnum):
    """The state of one (event, target) pair, as stored in `deliveries.state`."""

    PENDING = "pending"  # recorded by the receiver, no claim yet
    CALLING = "calling"  # a claim: one worker holds the pair until `lease_until`
    RETRYING = "retrying"  # a call failed (or reconciliation reopened it): claimable
    DELIVERED = "delivered"  # the target acted on the call
    ALREADY_DONE = "already_done"  # the target had done it already (not by this call)
    PARKED = "parked"  # given up; claimable should the cancellation come again
    # Another event holds this target's order (`effects`): its effect is that event's, no call.
    DUPLICATE = "duplicate"


# Settled: an effect happened, never call the target again (only reconciliation reopens one).
# The one definition of "settled": the store, the console and the tests all use it.
# `duplicate`: the effect is another event's on the same target order (`bridge/store/effects.py`).
SETTLED_STATES: Final = (
    DeliveryState.DELIVERED,
    DeliveryState.ALREADY_DONE,
    DeliveryState.DUPLICATE,
)
CLAIMABLE_STATES: Final = (DeliveryState.PENDING, DeliveryState.RETRYING, DeliveryState.PARKED)


class StepKind(StrEnum):
    """What one history row (a transition) records; `step_kind` tells them apart."""

    ACCEPTED = "accepted"  # `pending`: the receiver recorded the event for the target
    ATTEMPT = "attempt"  # the outcome of one call to the target (or of a worker's error)
    REOPENED = "reopened"  # reconciliation: the target did not act on a delivered pair
    REOPEN_UNDONE = "reopen_undone"  # reconciliation: its reopened event could not be sent
    REPLAYED = "replayed"  # an operator replayed the pair's parked message
    DROPPED = "dropped"  # an operator dropped the pair's parked message

    @property
    def marker(self) -> str:
        """How the detail of a step of this kind begins ("" for accepted steps and attempts).

        Writers put it first: `f"{StepKind.REPLAYED.marker}: in the console, ..."`.
        """
        return _MARKERS.get(self, "")


# The stored markers: what a transition's detail starts with, by kind (in the order checked).
_MARKERS: Final[Mapping[StepKind, str]] = {
    StepKind.REOPENED: "reopened by reconciliation",
    StepKind.REOPEN_UNDONE: "reopen undone",
    StepKind.REPLAYED: "replayed from the parked queue",
    StepKind.DROPPED: "dropped from the parked queue",
}


def step_kind(state: str, detail: str | None) -> StepKind:
    """The kind of the history row with `state` and `detail`.

    A row whose detail begins with a marker is reconciliation's or an operator's (not an
    attempt: no call to the target); otherwise `pending` is the acceptance, anything else an
    attempt's outcome.
    """
    if detail:
        for kind, marker in _MARKERS.items():
            if detail.startswith(marker):
                return kind
    return StepKind.ACCEPTED if state == DeliveryState.PENDING else StepKind.ATTEMPT


def unmarked(detail: sa.ColumnElement[str | None]) -> sa.ColumnElement[bool]:
    """SQL for `step_kind(...) in (ACCEPTED, ATTEMPT)` on a transitions `detail` column."""
    return sa.and_(
        *(
            sa.or_(detail.is_(None), sa.not_(detail.startswith(marker)))
            for marker in _MARKERS.values()
        )
    )
