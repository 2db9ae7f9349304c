"""Named scenarios: the paths through the lifecycle that tests pick by what they are, built on
cli.samples.scenario (the demo's synthetic achievements).

Every function takes the server's date (deadlines count from it: a shared time-skipping server
may be years ahead of the wall clock) and optional `dataclasses.replace` changes, and gives a
fresh achievement id, so tests never collide on a workflow id.
`tests/test_lifecycle_rules.py::test_scenarios_are_what_their_names_say` keeps the names true.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date
from typing import Any

from cli.samples import Scenario, scenario


def _sample(index: int, today: date, **changes: Any) -> Scenario:
    base = scenario(index, uuid.uuid4().hex[:8].upper(), today)
    return dataclasses.replace(base, **changes)


def municipal_transfer(today: date, **changes: Any) -> Scenario:
    """Municipal finance (its mandatory-listing clock runs), a transfer ready for the market
    without a proof of concept, listed on sstec and jstec, paid in one instalment."""
    return _sample(0, today, **changes)


def municipal_resource(today: date, **changes: Any) -> Scenario:
    """Municipal finance with no intended mode: held in the resource pool while the
    mandatory-listing clock runs towards its deadline."""
    sc = municipal_transfer(today)
    disclosure = sc.disclosure.model_copy(update={"intended_modes": []})
    return dataclasses.replace(sc, disclosure=disclosure, **changes)


def immature_licence(today: date, **changes: Any) -> Scenario:
    """A licence of an immature achievement (low TRL): proof of concept first. National
    finance, one exchange, two instalments."""
    return _sample(1, today, **changes)


def transfer_then_company(today: date, **changes: Any) -> Scenario:
    """A transfer with an equity investment: a contract on the exchange, then a company and
    incubation. Municipal finance, one exchange, three instalments."""
    return _sample(2, today, **changes)


def cooperative_development(today: date, **changes: Any) -> Scenario:
    """Cooperative implementation (a development contract), ready for the market. National and
    enterprise funds (no mandatory listing), one exchange, one instalment."""
    return _sample(3, today, **changes)


def equity_after_proof_of_concept(today: date, **changes: Any) -> Scenario:
    """An equity investment only, after a proof of concept: incubation without a listing.
    Municipal finance."""
    return _sample(4, today, **changes)


def resource_first(today: date, **changes: Any) -> Scenario:
    """No intended mode and national finance: registered, then a dormant resource until an
    officer activates it (the demo activates it for a transfer with equity)."""
    return _sample(5, today, **changes)


def transfer_then_company_on_two_exchanges(today: date, **changes: Any) -> Scenario:
    """A transfer with an equity investment listed on sstec and jstec, three instalments, then
    incubation. Municipal finance."""
    return _sample(8, today, **changes)
