"""The lifecycle's own events, as the parties see them: LISTEN on the append's NOTIFY.

The projection append (`append_lifecycle_events`, migration 0009) sends one NOTIFY on channel
`lifecycle_events` per append that added events: `{"workflow_id", "stage", "last_seq",
"types"}`. The benchmark's floor and its canned engine send the same NOTIFY through PostgreSQL
from their own append stand-ins (`Notifier`), so all three sides pay one NOTIFY per append.

`Listener` holds ONE connection for the whole driver and wakes per-workflow waiters: a party
waits for "the lifecycle entered evaluation" or "a listing was recorded" instead of polling a
query.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from temporalio import activity

CHANNEL = "lifecycle_events"


def stage_key(stage: str) -> str:
    return f"stage:{stage}"


def type_key(event_type: str) -> str:
    return f"type:{event_type}"


def note(workflow_id: str, stage: str, types: Iterable[str]) -> str:
    """The payload the append function sends (the floor's and canned engine's stand-in)."""
    return json.dumps(
        {"workflow_id": workflow_id, "stage": stage, "last_seq": None, "types": list(types)}
    )


class Notifier:
    """What the floor's and the canned engine's appends do instead of writing: the NOTIFY."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def notify(self, workflow_id: str, stage: str, types: Iterable[str]) -> None:
        await self._pool.execute(
            "SELECT pg_notify($1, $2)", CHANNEL, note(workflow_id, stage, types)
        )

    @activity.defn(name="bench.append")
    async def append(self, workflow_id: str, label: str) -> str:
        """The floor's activity (or local activity) for each of the lifecycle's appends
        (bench/bare.py)."""
        await self.notify(workflow_id, "bare", [label])
        return label


class Listener:
    """One LISTEN connection; waiters per (workflow id, key) where a key is a stage entered
    (`stage_key`) or an event type appended (`type_key`).

    What arrives before anyone waits is kept, so a waiter registered late still wakes; a
    driver `forget`s a workflow when it is done with it. `count` tells how many workflows of a
    group (their ids up to the last `-`: one batch) have heard a key, without asking the
    server: the parked benchmark counts 20,000 that way."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = defaultdict(set)
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}
        self._tally: Counter[tuple[str, str]] = Counter()
        self.received = 0

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self.received += 1
        body: dict[str, Any] = json.loads(str(payload))
        wid = str(body["workflow_id"])
        keys = {stage_key(str(body["stage"]))}
        keys.update(type_key(str(t)) for t in body.get("types") or [])
        group = wid.rpartition("-")[0]
        for key in keys - self._seen[wid]:
            self._tally[(group, key)] += 1
        self._seen[wid].update(keys)
        for key in keys:
            event = self._waiters.get((wid, key))
            if event is not None:
                event.set()

    async def wait(self, workflow_id: str, key: str, limit: float) -> None:
        if key in self._seen.get(workflow_id, ()):
            return
        event = self._waiters.setdefault((workflow_id, key), asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), limit)
        except TimeoutError:
            raise TimeoutError(f"{workflow_id}: no {key} within {limit:.0f} s") from None
        finally:
            self._waiters.pop((workflow_id, key), None)

    def count(self, group: str, key: str) -> int:
        """Workflows whose id is `<group>-<anything without ->` that have heard `key`."""
        return self._tally[(group, key)]

    def forget(self, workflow_id: str) -> None:
        self._seen.pop(workflow_id, None)


@asynccontextmanager
async def listening(dsn: str) -> AsyncIterator[Listener]:
    listener = Listener()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.add_listener(CHANNEL, listener._on_notify)
        yield listener
    finally:
        await conn.close()
