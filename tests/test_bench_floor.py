"""The floor's script reads a lifecycle's appends where the lifecycle has them (milliseconds,
no server): since `projection-as-activity` they are activities on the workflow's own queue
(`A`; the external calls are `r`/`x`), before it local activities (`L`). The driver waits on
each append's label as it waits on the lifecycle's own notifications."""

from bench.bare import append_labels


def test_the_appends_of_a_common_path_carry_the_wait_that_follows_them() -> None:
    # register, search, append (evaluation), 3 reviews with appends between, listing, append
    # (listed), deal and payment, then the reports and the last appends.
    script = "rxAUAUUxASrSArA"
    assert append_labels(script) == {2: "U1", 4: "U2", 8: "S1", 12: "appended", 14: "appended"}


def test_local_appends_of_older_shapes_are_labelled_alike() -> None:
    assert append_labels("rxLULUUxLSrSrL") == {2: "U1", 4: "U2", 8: "S1", 13: "appended"}
