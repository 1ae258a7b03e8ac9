"""An event's timeline, from what `order_status` reports: arrival, then each target's steps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.store.lifecycle import DeliveryState, StepKind, step_kind

# Outcomes of one call to the target (the store's history holds outcomes, not the claims).
ATTEMPTS = {
    DeliveryState.RETRYING: "failed, will retry",
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.ALREADY_DONE: "already done",
    DeliveryState.PARKED: "parked",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the timeline; `kind` is a state or `received`, for the page's styling."""

    at: str
    kind: str
    title: str
    target: str | None = None
    detail: str | None = None


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)  # order_status writes RFC 3339 UTC, `Z` included


def timeline(event: dict[str, Any]) -> list[Step]:
    """Oldest first: received, accepted for each target, each attempt with the target's answer."""
    steps = [
        Step(event["first_seen"], "received", f"received from {event['source']} ({event['shop']})")
    ]
    for delivery in event["deliveries"]:
        target = delivery["target"]
        attempt = 0
        for step in delivery["history"]:
            state = step["state"]
            detail = step["detail"] or ""
            kind = step_kind(state, detail)
            if kind is StepKind.ACCEPTED:
                steps.append(Step(step["at"], state, f"accepted, queued for {target}", target))
                continue
            if state == DeliveryState.DUPLICATE:  # settled at the claim: no call was made
                title = f"not called: {target} knows this order through another event"
                steps.append(Step(step["at"], state, title, target, detail))
                continue
            if kind is not StepKind.ATTEMPT:  # reconciliation or an operator, not a call
                style = state if kind is StepKind.REOPEN_UNDONE else kind
                steps.append(Step(step["at"], style, detail.split(":", 1)[0], target, detail))
                continue
            attempt += 1
            what = ATTEMPTS.get(state, state)
            steps.append(
                Step(step["at"], state, f"attempt {attempt}: {what}", target, step["detail"])
            )
        if delivery["state"] == DeliveryState.CALLING:
            steps.append(
                Step(
                    delivery["updated_at"],
                    DeliveryState.CALLING,
                    f"attempt {attempt + 1}: calling",
                    target,
                )
            )
    if event["times_received"] > 1:
        steps.append(
            Step(
                event["last_seen"],
                "received",
                f"received again (the platform sent it {event['times_received']} times)",
            )
        )
    # Stable: steps at the same moment keep the order the store wrote them in.
    return sorted(steps, key=lambda step: _moment(step.at))
