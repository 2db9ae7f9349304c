"""`achievements status` shows what the lifecycle refused and what it holds (issue 12, item 5):
the rendering alone, from a state, no server."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from test_event_rules import _in_transaction

from cli.status_view import render_status
from schemas.incubation import IncubatorAdmission
from schemas.refusals import RefusedEvent

AT = datetime(2027, 3, 1, 12, tzinfo=UTC)


def _shown(**changes: object) -> str:
    console = Console(width=200, record=True)
    console.print(render_status(_in_transaction(**changes), now=AT))
    return console.export_text()


def test_status_shows_refused_events_with_their_reasons() -> None:
    refused = RefusedEvent(
        type="deal",
        event_id="deal-stray",
        source="exchange:sstec",
        reason="the deal is on no listing of this achievement",
        refused_at=AT,
    )
    shown = _shown(refused=[refused])
    assert "refused events" in shown
    assert "deal-stray" in shown and "the deal is on no listing of this achievement" in shown
    assert "refused events" not in _shown()


def test_status_shows_incubator_events_held_for_the_company() -> None:
    held = IncubatorAdmission(event_id="adm-1", incubator="Zhangjiang Park", admitted_at=AT)
    shown = _shown(held_incubator_events=[held])
    assert "held incubator events" in shown
    assert "incubator_admitted" in shown and "adm-1" in shown
