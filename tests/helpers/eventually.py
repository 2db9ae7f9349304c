"""Waiting for something to become true, bounded by wall time rather than by a number of tries.

A count of tries means a different wait on every machine (each try costs a query whose time
varies tenfold between a laptop and a loaded CI runner); a time bound says what the test means.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Generous: only a broken test ever waits this long, and a slow CI runner must never fail a
# correct one. Each caller may say less.
WITHIN_SECONDS = 20.0
# Short: the time-skipping tests wait on the workflow's state many times each.
POLL_SECONDS = 0.01


async def assert_eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within: float = WITHIN_SECONDS,
    what: str,
    interval: float = POLL_SECONDS,
) -> T:
    """Await `check` until it returns instead of raising AssertionError; return what it returned.

    After `within` seconds, fail with `what` and the last AssertionError's message, so the
    failure says what never happened and how things stood instead.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError as err:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not within {within:g}s; last: {err}") from err
        await asyncio.sleep(interval)
