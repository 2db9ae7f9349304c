"""The floor's script reads a lifecycle's appends where the lifecycle has them (milliseconds,
no server): since `projection-as-activity` they are activities on the workflow's own queue
(`A`; the external calls are `r`/`x`), before it local activities (`L`). The driver waits on
each append's label as it waits on the lifecycle's own notifications."""

from bench.floor_input import append_labels
from bench.shape import counts


def test_the_appends_of_a_common_path_carry_the_wait_that_follows_them() -> None:
    # register, search, append (evaluation), 3 reviews with appends between, listing, append
    # (listed), deal and payment, then the reports and the last appends.
    script = "rxAUAUUxASrSArA"
    assert append_labels(script) == {2: "U1", 4: "U2", 8: "S1", 12: "appended", 14: "appended"}


def test_local_appends_of_older_shapes_are_labelled_alike() -> None:
    assert append_labels("rxLULUUxLSrSrL") == {2: "U1", 4: "U2", 8: "S1", 13: "appended"}


def test_the_fund_accrual_is_no_append() -> None:
    # `a` is an own-queue activity that is not a projection append: it carries no label, so
    # the floor runs it as a plain no-op and sends no NOTIFY for it.
    assert append_labels("rxAUAUUxASaSArA") == {
        2: "U1",
        4: "U2",
        8: "S1",
        12: "appended",
        14: "appended",
    }


def test_a_parked_floor_is_counted_by_its_appends_before_and_after_the_timer() -> None:
    # Registered and recorded, parked on the timer to the instant (W); woken: listed and
    # recorded, then parked for good (Z). The parked benchmark counts those two labels.
    assert append_labels("rAWxAZ") == {1: "W", 4: "Z"}
    # The pilot parks for good on a 3-year timer: its one append is labelled Z.
    assert append_labels("rATZ") == {1: "Z"}


def test_a_lifecycles_shape_counts_the_accrual_as_an_activity() -> None:
    assert counts("rxAUaW")["activities"] == 4
    assert counts("rxAUaW")["timers"] == 1
