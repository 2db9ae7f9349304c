"""What the Temporal UI shows of a lifecycle: its current details, and the next actions they name.

Pure functions of the state and workflow time (no I/O, no clock of their own), so the engine
can rewrite the details at every stage entry, before every external call and at every wake-up,
and unit tests can read them directly. Markdown, short: the stage first, then what it waits
for, by when, whether it is overdue, who must act and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.rules as rules
    from schemas.lifecycle import LifecycleState, Stage, Waiting

# The static details, set once when a lifecycle starts (workflows/start.py).
STATIC_DETAILS = (
    "Stages: disclosure → evaluation → proof of concept → transaction → incubation → "
    "reporting → completed; a dormant *resource* can be activated, withdrawal ends any stage.\n"
    "Now: the current details below; who must act: the search attribute `NeedsAttentionSince`"
    " (with `AttentionReason`); the whole record: `achievements status ID`."
)


@dataclass(frozen=True)
class NextAction:
    """One way to move a waiting lifecycle on: a CLI command (if a person gives it) and the
    gateway endpoint behind it (as named in docs/api/gateway.openapi.json)."""

    method: str
    path: str
    command: str | None = None  # the `achievements` sub-command
    options: str = ""

    def text(self, achievement_id: str) -> str:
        endpoint = f"`{self.method} {self.path.replace('{achievement_id}', achievement_id)}`"
        if self.command is None:
            return endpoint
        options = f" {self.options}" if self.options else ""
        return f"`achievements {self.command} {achievement_id}{options}` or {endpoint}"


REVIEW = NextAction(
    "POST",
    "/achievements/{achievement_id}/reviews",
    "review",
    "--novelty … --maturity … --market … --ip-strength … --recommendation …",
)
DECIDE = NextAction(
    "POST", "/achievements/{achievement_id}/decision", "decide", "--route … --reason …"
)
ACTIVATE = NextAction(
    "POST", "/achievements/{achievement_id}/activate", "activate", "--mode … --reason …"
)
GO_NO_GO = NextAction(
    "POST",
    "/achievements/{achievement_id}/poc/decision",
    "go-no-go",
    "--technical/--not-technical --market/--not-market",
)
WITHDRAW = NextAction("POST", "/achievements/{achievement_id}/withdraw", "withdraw", "--reason …")
# Systems move these on through their signed webhooks; no person's command does.
SYSTEM_EVENT = NextAction("POST", "/webhooks/{system}")

ALL_NEXT_ACTIONS = (REVIEW, DECIDE, ACTIVATE, GO_NO_GO, WITHDRAW, SYSTEM_EVENT)


def next_action(achievement_id: str, *actions: NextAction, who: str = "") -> str:
    """The sentence that names what moves a wait on, e.g. for `Waiting.next_action`."""
    said = "; or ".join(a.text(achievement_id) for a in actions)
    return f"{who}: {said}" if who else said


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def stage_name(stage: Stage) -> str:
    return stage.value.replace("_", " ").capitalize()


def _head(s: LifecycleState) -> str:
    since = s.stage_since()
    return f"**{stage_name(s.stage)}**" + (f" (since {since.date().isoformat()})" if since else "")


def _clock(s: LifecycleState) -> list[str]:
    due = rules.mandatory_due_at(s)
    return [f"Mandatory listing due {_when(due)} (plan item 8)."] if due is not None else []


def waiting(s: LifecycleState, w: Waiting | None, now: datetime) -> str:
    """The details while the lifecycle waits (or has just entered its stage)."""
    lines = [_head(s)]
    if s.stage.is_final:
        note = s.timeline[-1].note if s.timeline else ""
        return lines[0] + f": the lifecycle is over{f' ({note})' if note else ''}."
    if w is None:
        note = s.timeline[-1].note if s.timeline else ""
        lines[0] += f": entered{f' ({note})' if note else ''}."
    else:
        by = ""
        if w.until is not None:
            by = f", by {_when(w.until)}"
            if now >= w.until:
                by += f" — **overdue since {_when(w.until)}**"
        lines[0] += f": waiting for {w.on}{by}."
        if w.attention_since is not None:
            lines.append(
                f"Needs a person since {_when(w.attention_since)} (`{w.attention_reason}`)."
            )
        lines.append(f"Next: {w.next_action}." if w.next_action else "Moves on by itself.")
    return "\n".join(lines + _clock(s))


def calling(s: LifecycleState, system: str, call: str, since: datetime) -> str:
    """The details while an external call runs (and retries through an outage)."""
    lines = [
        f"{_head(s)}: calling the {system} ({call}) since {_when(since)}; "
        "retries are shown under Pending Activities."
    ]
    return "\n".join(lines + _clock(s))
