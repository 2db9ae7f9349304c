"""When `achievements dev` restarts a part, and when it gives up (the policy alone, in time)."""

from __future__ import annotations

from cli.supervision import FAST_CRASH_SECONDS, GIVE_UP_AFTER_FAST_CRASHES, RestartPolicy


def test_fast_crashes_back_off_doubling_then_give_up_with_the_reason() -> None:
    policy = RestartPolicy(started_at=0.0)
    now, delays = 0.0, []
    for _ in range(GIVE_UP_AFTER_FAST_CRASHES - 1):
        now += 1.0  # dies a second after each start
        delay = policy.crashed(now)
        assert delay is not None
        delays.append(delay)
        assert not policy.due(now) and policy.due(now + delay)
        now += delay
        policy.restarted(now)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert policy.crashed(now + 1.0) is None
    reason = policy.giving_up_reason("worker", 1, ".data/logs/worker.log")
    assert f"crashed {GIVE_UP_AFTER_FAST_CRASHES} times in a row" in reason
    assert "last exit: 1" in reason and ".data/logs/worker.log" in reason


def test_a_part_that_ran_a_while_starts_a_fresh_count() -> None:
    policy = RestartPolicy(started_at=0.0)
    now = 0.0
    for _ in range(GIVE_UP_AFTER_FAST_CRASHES * 3):
        now += FAST_CRASH_SECONDS + 1  # each run long enough: never "fast"
        assert policy.crashed(now) == 1.0
        policy.restarted(now + 1.0)
        now += 1.0
