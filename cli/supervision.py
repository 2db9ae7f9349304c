"""When `achievements dev` restarts a part that died, and when it gives up.

A part that crashes is restarted after a backoff that doubles (1 s up to 30 s). A crash soon
after a (re)start counts as "fast"; only repeated fast crashes in a row (a part that cannot
start at all: a broken config, a port taken, a corrupt data folder) make the stack give up,
and the reason names the part, its exit and its log. A part that ran for a while and then
died starts a fresh count.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
FAST_CRASH_SECONDS = 30.0
GIVE_UP_AFTER_FAST_CRASHES = 5


@dataclass
class RestartPolicy:
    """The restart history of one part; times are `time.monotonic()` seconds."""

    started_at: float
    fast_crashes: int = 0
    restart_due: float | None = None

    def crashed(self, now: float) -> float | None:
        """Record a crash at `now`: the delay before the restart, or None to give up."""
        if now - self.started_at < FAST_CRASH_SECONDS:
            self.fast_crashes += 1
        else:
            self.fast_crashes = 1
        if self.fast_crashes >= GIVE_UP_AFTER_FAST_CRASHES:
            return None
        delay = BACKOFF_SECONDS[min(self.fast_crashes - 1, len(BACKOFF_SECONDS) - 1)]
        self.restart_due = now + delay
        return delay

    def due(self, now: float) -> bool:
        return self.restart_due is not None and now >= self.restart_due

    def restarted(self, now: float) -> None:
        self.started_at = now
        self.restart_due = None

    def giving_up_reason(self, name: str, exit_code: int | str, log: str) -> str:
        return (
            f"{name} crashed {self.fast_crashes} times in a row, each within "
            f"{FAST_CRASH_SECONDS:.0f}s of its start (last exit: {exit_code}); giving up. "
            f"See {log}"
        )
