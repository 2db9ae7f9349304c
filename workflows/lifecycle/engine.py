"""The lifecycle's engine: how it waits, is interrupted, records events, enters stages and
calls the outside world. The replay-sensitive machinery lives here, apart from the stages and
handlers (workflow.py, stages.py), so a change to a rule cannot change how history is written.

The stages build on four promises of the engine:
- `wait_until(condition, until)` returns whether the condition held, and raises an interrupt
  (a withdrawal, a due mandatory listing, the server's continue-as-new suggestion) instead of
  waiting through one; every wait first appends what is recorded so far to PostgreSQL;
- `record(...)` is an event decided, appended in order exactly once (`record_outbox`);
- `enter(stage)` and `show_waiting(what, until, ...)` keep the state, the search attributes
  (NeedsAttentionSince/AttentionReason too) and the UI's current details in step; `wait_until`
  rewrites the details at every wake-up, so a passed deadline reads "overdue since";
- `call_system(...)` and `idempotency_key(step)`: external calls that survive outages and
  retries without doing anything twice; the details name the call while it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.patches as patches
    import workflows.rules as rules
    from activities.projections import ProjectionActivities
    from schemas.events import EventType, LifecycleEvent
    from schemas.identity import Actor
    from schemas.lifecycle import AttentionReason, LifecycleState, Stage, StageEntry, Waiting
    from schemas.refusals import REFUSALS_KEPT, RefusedEvent, held_event_type
    from workflows.options import PROJECTION_RETRY, PROJECTION_TIMEOUT, System, call_system

# The lifecycle's own modules run in the sandbox (its protection of our code is kept).
from workflows.lifecycle import details

SEEN_EVENT_IDS_KEPT = 500
T = TypeVar("T")


class Interrupt(Exception):
    """Leaves whatever stage is running; the run loop decides what comes next."""


class WithdrawalRequested(Interrupt):
    pass


class MandatoryListingDue(Interrupt):
    pass


class ContinueAsNewSuggested(Interrupt):
    pass


class LifecycleEngine:
    state: LifecycleState

    # ------------------------------------------------------------------ interrupts

    def withdrawal_pending(self) -> bool:
        """A withdrawal was asked for and winding down has not started (it sets the outcome)."""
        return self.state.withdrawal is not None and self.state.outcome_reason is None

    def _interrupt_pending(self) -> bool:
        due = rules.mandatory_due_at(self.state)
        return (
            bool(self.state.outbox)
            or self.state.withdrawal is not None
            or (due is not None and workflow.now() >= due)
        )

    def _raise_interrupts(self, can_continue_as_new: bool) -> None:
        if self.withdrawal_pending():
            raise WithdrawalRequested()
        due = rules.mandatory_due_at(self.state)
        if due is not None and workflow.now() >= due:
            raise MandatoryListingDue()
        if can_continue_as_new and workflow.info().is_continue_as_new_suggested():
            raise ContinueAsNewSuggested()

    # ------------------------------------------------------------------ waiting

    async def wait_until(
        self,
        condition: Callable[[], bool],
        until: datetime | None = None,
        can_continue_as_new: bool = True,
    ) -> bool:
        """Wait for `condition` until `until`; record events and honour interrupts meanwhile.

        Returns whether the condition held. Raises an `Interrupt` for a withdrawal, a due
        mandatory listing, or the server's continue-as-new suggestion.
        """
        while True:
            await self.record_outbox()
            # Woken at a deadline or by a signal: what the UI shows is rewritten from the state.
            self.show_details()
            # Interrupts first: when signals keep the condition true (a stream of payments),
            # the run must still reach continue-as-new once the server suggests it.
            self._raise_interrupts(can_continue_as_new)
            if condition():
                return True
            now = workflow.now()
            wake_times = [t for t in (until, rules.mandatory_due_at(self.state)) if t is not None]
            if until is not None and now >= until:
                return False
            timeout = (min(wake_times) - now) if wake_times else None
            try:
                await workflow.wait_condition(
                    lambda: (
                        condition()
                        or self._interrupt_pending()
                        or (can_continue_as_new and workflow.info().is_continue_as_new_suggested())
                    ),
                    timeout=timeout,
                    # Names the timer in the UI's timeline, e.g. "instalment 2 of 3".
                    timeout_summary=self._timer_summary(until),
                )
            except TimeoutError:
                pass

    def _timer_summary(self, until: datetime | None) -> str | None:
        due = rules.mandatory_due_at(self.state)
        if until is not None and (due is None or until <= due):
            return (self.state.waiting.on if self.state.waiting else "deadline")[:100]
        return "mandatory listing deadline (item 8)" if due is not None else None

    def show_waiting(
        self,
        what: str,
        until: datetime | None = None,
        *,
        next_action: str | None = None,
        attention: tuple[AttentionReason, datetime] | None = None,
    ) -> None:
        """Say what the lifecycle waits for, by when (a deadline), what moves it on and, with
        `attention`, that a person must act (why, since when): in the state, the UI's details
        and the search attributes. It does not wait (`wait_until` does)."""
        s = self.state
        s.waiting = Waiting(on=what, until=until, next_action=next_action)
        self.mark_attention(attention)

    def mark_attention(self, attention: tuple[AttentionReason, datetime] | None) -> None:
        """Whether a person must act on the current wait (why, since when), or no longer; the
        search attributes follow when it changes (gated: lifecycles recorded before the
        needs-attention-marked patch record no attention at all)."""
        s = self.state
        before = rules.attention_attributes(s)
        marks = patches.needs_attention_marked()
        if s.waiting is not None:
            reason, since = attention if attention is not None and marks else (None, None)
            s.waiting = s.waiting.model_copy(
                update={"attention_reason": reason, "attention_since": since}
            )
        if marks and rules.attention_attributes(s) != before:
            workflow.upsert_search_attributes(rules.attention_attributes(s))
        self.show_details()

    def show_details(self) -> None:
        """Rewrite the UI's current details from the state and the time now."""
        s = self.state
        workflow.set_current_details(details.waiting(s, s.waiting, workflow.now()))

    # ------------------------------------------------------------------ stages and events

    def enter(self, stage: Stage, note: str) -> None:
        s = self.state
        s.stage = stage
        s.timeline.append(StageEntry(stage=stage, entered_at=workflow.now(), note=note))
        s.waiting = None
        self.record(EventType.STAGE_ENTERED, {"stage": stage.value, "note": note})
        # A new stage: whatever needed a person before is settled (unset, when marked).
        workflow.upsert_search_attributes(
            rules.search_attributes(s, attention=patches.needs_attention_marked())
        )
        self.show_details()
        workflow.logger.info("Stage %s: %s", stage.value, note)
        # Incubator events held for a company that can no longer come (only lifecycles with
        # the incubator-events-held patch hold any): refused now, never lost.
        if s.held_incubator_events and not rules.incubator_accepts(s):
            held, s.held_incubator_events = s.held_incubator_events, []
            for event in held:
                self.refuse(
                    held_event_type(event),
                    event.event_id,
                    "incubator",
                    f"incubation ended without a company: {note}",
                    event.model_dump(mode="json"),
                )

    def record(
        self,
        type: EventType,
        payload: dict[str, Any],
        source: str = "workflow",
        at: datetime | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Decide an event: it goes to the outbox, and to PostgreSQL at the next wait.
        `actor`: the authenticated person who caused it, if any."""
        s = self.state
        s.outbox.append(
            LifecycleEvent(
                event_id=str(workflow.uuid4()),
                achievement_id=s.achievement_id,
                workflow_id=s.workflow_id,
                institution_code=s.disclosure.institution.code,
                type=type,
                stage=s.stage.value,
                occurred_at=at or workflow.now(),
                source=source,
                payload=payload,
                actor=actor,
            )
        )

    def refuse(
        self,
        type: str,
        event_id: str,
        source: str,
        reason: str,
        event: dict[str, Any] | None = None,
    ) -> None:
        """Record an external event that the lifecycle does not apply, and why: its sender had
        a 2xx and never sends it again. (A redelivery is a no-op and never comes here.)"""
        s = self.state
        s.refused.append(
            RefusedEvent(
                type=type,
                event_id=event_id,
                source=source,
                reason=reason,
                refused_at=workflow.now(),
            )
        )
        del s.refused[:-REFUSALS_KEPT]
        payload: dict[str, Any] = {
            "type": type,
            "event_id": event_id,
            "system": source,
            "reason": reason,
        }
        if event is not None:
            payload["event"] = event
        self.record(EventType.EXTERNAL_EVENT_REFUSED, payload, source)
        workflow.logger.warning("%s event %s (%s) refused: %s", source, type, event_id, reason)

    async def record_outbox(self) -> None:
        """Append the outbox to PostgreSQL, in order, each event exactly once.

        Since `projection-as-activity`, one batch a call: events that arrive during the append
        go with the next one, after the caller has looked at interrupts. Looping until the
        outbox is empty would keep a lifecycle under a stream of signals (a burst of bids)
        appending for as long as the stream lasts, and never reaching its continue-as-new.
        """
        s = self.state
        while s.outbox:
            # Regular activities again since `projection-as-activity`: with a local one, a query
            # that arrives while it runs can complete the workflow task before the workflow has
            # seen its result, and that history does not replay (temporalio 1.35.0; reproduced
            # by tests/test_queries_while_recording.py). Older runs keep their recorded path.
            as_activity = patches.projection_as_activity()
            if not as_activity and patches.local_projection():
                batch = list(s.outbox)
                await workflow.execute_local_activity_method(
                    ProjectionActivities.record_events,
                    args=[batch, rules.view(s, workflow.now())],
                    start_to_close_timeout=PROJECTION_TIMEOUT,
                    retry_policy=PROJECTION_RETRY,
                )
            elif as_activity or patches.batched_projection():
                # One activity per wake-up instead of one per event: a third of the history.
                batch = list(s.outbox)
                await workflow.execute_activity_method(
                    ProjectionActivities.record_events,
                    args=[batch, rules.view(s, workflow.now())],
                    start_to_close_timeout=PROJECTION_TIMEOUT,
                    retry_policy=PROJECTION_RETRY,
                )
            else:
                batch = s.outbox[:1]
                await workflow.execute_activity_method(
                    ProjectionActivities.record_event,
                    args=[batch[0], rules.view(s, workflow.now())],
                    start_to_close_timeout=PROJECTION_TIMEOUT,
                    retry_policy=PROJECTION_RETRY,
                )
            # Handlers may have appended more meanwhile: only the recorded ones leave.
            del s.outbox[: len(batch)]
            s.events_recorded += len(batch)
            if as_activity:
                return

    async def record_everything(self) -> None:
        """Append until the outbox is empty (the end of a run)."""
        while self.state.outbox:
            await self.record_outbox()

    def first_delivery(self, event_id: str) -> bool:
        """Whether an external event is new: a redelivered one has no second effect."""
        seen = self.state.seen_event_ids
        if event_id in seen:
            return False
        seen.append(event_id)
        del seen[:-SEEN_EVENT_IDS_KEPT]
        return True

    # ------------------------------------------------------------------ the outside world

    async def call_system(
        self, system: System, activity: Callable[..., Awaitable[T]], args: list[Any]
    ) -> T:
        """An external call; the details name it while it runs (through retries and outages),
        then show the wait again."""
        name = getattr(activity, "__name__", "call").replace("_", " ")
        shown = details.calling(self.state, system, name, workflow.now())
        result = await call_system(system, activity, args, shown)
        self.show_details()
        return result

    def idempotency_key(self, step: str) -> str:
        """Idempotency key of an external call: stable across retries and continue-as-new."""
        return f"{self.state.workflow_id}/{step}"
