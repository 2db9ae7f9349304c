"""The floor's input and the reading of its script (bench/bare.py): plain data and pure
functions, kept out of the workflow's module so that the sandbox passes them through instead of
re-executing them for every new workflow instance, as it does the lifecycle's schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

PARKED_STAGE = "bench-parked"
WOKEN_STAGE = "bench-woken"


class BareInput(BaseModel):
    script: str
    timer_seconds: float = 86_400.0
    mark_parked: bool = False
    wake_at: datetime | None = None
    # `A` and `L` send the append's NOTIFY (the worker then needs bench.events.Notifier); off,
    # they are no-ops.
    notify: bool = False
    # `V` (a search-attribute upsert in the lifecycle's history) upserts the lifecycle's
    # attributes; off, it is skipped: the floor does the activities, signals, timers
    # and updates, and the upserts are measured apart (figure 1's "floor + upserts").
    upserts: bool = False


# The tokens of a lifecycle's appends: a local activity (`local-projection`), or an activity
# on the workflow's own queue (since `projection-as-activity`; the external calls are r/x).
APPENDS = "AL"
# The floor's parking tokens: a timer to the instant (`W`), for ever (`Z`).
PARKING = "WZ"


def append_labels(script: str) -> dict[int, str]:
    """For each append (`A`, `L`) at index i: the wait after it (`U1`, `S1`, ...) when the next
    wait comes before the next append, else `appended`. The driver acts on those labels as it
    acts on the lifecycle's "entered evaluation" and "listed" notifications. An append right
    before the parking `W` or `Z` is labelled with it: the parked benchmark counts the floor's
    parked and woken workflows by those labels, as it counts the engine's by event type."""
    labels: dict[int, str] = {}
    pending: int | None = None
    seen = {"U": 0, "S": 0}
    for i, token in enumerate(script):
        if token in APPENDS:
            if pending is not None:
                labels[pending] = "appended"
            pending = i
        elif token in "US":
            seen[token] += 1
            if pending is not None:
                labels[pending] = f"{token}{seen[token]}"
                pending = None
        elif token in PARKING and pending is not None:
            labels[pending] = token
            pending = None
    if pending is not None:
        labels[pending] = "appended"
    return labels
