"""Every `workflow.patched` gate of the workflows, and the ledger that says when each goes.

A gate keeps lifecycles that were recorded before a change on their recorded path while new
ones take the new path (they live for years, so old paths run for years too). Each gate is a
function here, so there is one place to read them all; the ledger says when it shipped, which
committed histories were recorded before it (`tests/histories/before-<id>/`, replayed by
tests/test_replay.py) and what to delete when it is retired. Retiring follows the stages of
docs/operations.md ("Retiring a patch"): deprecate, then remove.

Only workflow code calls the gates (they need a workflow context).
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow


@dataclass(frozen=True)
class Patch:
    id: str
    shipped: str  # the commit that introduced it
    histories: str | None  # the folder of histories recorded before it, if any
    old_path: str  # what goes when the patch is removed
    where: str


# The patches of issue 12 shipped together: the histories recorded before all of them.
ISSUE_12_HISTORIES = "tests/histories/before-issue-12-edges"
# The patches of issues 13 and 15, built in parallel: the histories recorded before all of them
# (at f646ff4, with the code every one of them changes).
ISSUES_13_15_HISTORIES = "tests/histories/before-issue-13-15"

PER_SYSTEM_TASK_QUEUES = Patch(
    id="per-system-task-queues",
    shipped="54aa638 (registry and exchange calls on their own task queues)",
    histories="tests/histories/before-per-system-task-queues",
    old_path="external calls on the workflow's own task queue (system_queue returns None)",
    where="workflows/options.py system_queue",
)
BATCHED_PROJECTION = Patch(
    id="batched-projection",
    shipped="2ec6f1b (one projection activity per wake-up)",
    histories="tests/histories/before-batched-projection",
    old_path="one record_event activity per event, and ProjectionActivities.record_event",
    where="workflows/lifecycle/engine.py record_outbox",
)
NO_LISTING_AFTER_DEAL = Patch(
    id="no-listing-after-deal",
    shipped="e8d2675 (no listing after a deal)",
    histories=None,  # no committed history took the old path
    old_path="listing on every exchange even after a deal closed on an earlier one",
    where="workflows/lifecycle/transaction.py _list_on_exchanges",
)
LOCAL_PROJECTION = Patch(
    id="local-projection",
    shipped="8b733f3 (projection appends as local activities)",
    histories="tests/histories/before-local-projection",
    old_path="the batched projection as a regular activity (the batched-projection branch)",
    where="workflows/lifecycle/engine.py record_outbox",
)
TEAM_SHARE_ROUNDS_UP = Patch(
    id="team-share-rounds-up",
    shipped="fa1a210 (the team's share rounds up to the cent)",
    histories="tests/histories/before-team-share-rounds-up",
    old_path="Distribution.of(..., team_rounds_up=False), half-up rounding of the team's share",
    where="workflows/lifecycle/workflow.py exchange_payment",
)
EXCHANGE_OWNS_ITS_LISTINGS = Patch(
    id="exchange-owns-its-listings",
    shipped="1f4e23f (an exchange speaks only for its own listings)",
    histories=None,  # reached only by an event no recorded history has
    old_path="events of one exchange applied to another exchange's listing",
    where="workflows/lifecycle/workflow.py on_another_exchange",
)
POC_CHILD_REPORTS_PROGRESS = Patch(
    id="poc-child-reports-progress",
    shipped="d671702 (proof of concept as it happens, issue 12 item 6)",
    histories=ISSUE_12_HISTORIES,
    old_path="the child applies without the policy's milestone schedule, tells its parent "
    "nothing until it ends, and waits by the end of each milestone's due day",
    where="workflows/proof_of_concept.py ProofOfConcept.run",
)
POC_PROGRESS_RECORDED = Patch(
    id="poc-progress-recorded",
    shipped="d671702 (proof of concept as it happens, issue 12 item 6)",
    histories=ISSUE_12_HISTORIES,
    old_path="the lifecycle ignores the child's poc_progress signal, and cancels a running "
    "proof of concept without waiting for it, recording nothing and telling the fund nothing",
    where="workflows/lifecycle/workflow.py poc_progress; stages.py _proof_of_concept",
)
EVALUATION_IN_PLAIN_WORDS = Patch(
    id="evaluation-in-plain-words",
    shipped="d671702 (small ones seen on the way, issue 12 item 8)",
    histories=ISSUE_12_HISTORIES,
    old_path="the mean score with every digit, the operator's overridden abandon answered "
    "'abandon', review reminders that name no count of missing reviews",
    where="workflows/lifecycle/stages.py _route, _evaluation; workflow.py decide",
)
EXTERNAL_EVENTS_REFUSED = Patch(
    id="external-events-refused",
    shipped="26e2ea3 (every external event not applied is recorded as refused)",
    histories=ISSUE_12_HISTORIES,
    old_path="events of unknown listings, wrong stages or no deal only logged or ignored",
    where="workflows/lifecycle/workflow.py signal handlers (refuse_* helpers)",
)
INCUBATOR_EVENTS_HELD = Patch(
    id="incubator-events-held",
    shipped="26e2ea3 (incubator events before the company are held, then applied)",
    histories=ISSUE_12_HISTORIES,
    old_path="incubator events before the company dropped (not marked seen)",
    where="workflows/lifecycle/workflow.py hold_incubator_event",
)
OWNERSHIP_SPLITS_INCOME = Patch(
    id="ownership-splits-income",
    shipped="6ef3173 (ownership and right of use share the income)",
    histories=ISSUE_12_HISTORIES,
    old_path="every payment split as if the institution owned the achievement alone",
    where="workflows/lifecycle/workflow.py exchange_payment",
)
EQUITY_FOLLOWS_OWNERSHIP = Patch(
    id="equity-follows-ownership",
    shipped="6ef3173 (the equity registration follows ownership)",
    histories=ISSUE_12_HISTORIES,
    old_path="technology equity registered as the institution's alone",
    where="workflows/lifecycle/stages.py _incubation",
)
REPORT_YEAR_ON_JURISDICTION_CALENDAR = Patch(
    id="report-year-on-jurisdiction-calendar",
    shipped="a098e1a (the annual report's default year on the jurisdiction's calendar)",
    histories=ISSUE_12_HISTORIES,
    old_path="the default year is the UTC year before the start (now.year - 1)",
    where="workflows/annual_report.py _year_before",
)
EXCHANGE_PUBLICITY_CLOCK = Patch(
    id="exchange-publicity-clock",
    shipped="3084ce7 (one publicity clock with the exchange)",
    histories=ISSUE_12_HISTORIES,
    old_path="publicity_days rounded to whole days; listed_at and publicity_ends_at from the"
    " workflow's own clock when the listing activity completed",
    where="workflows/lifecycle/transaction.py _list_on_exchanges",
)
DEALS_REFUSED_ON_EXCHANGE = Patch(
    id="deals-refused-on-exchange",
    shipped="3084ce7 (a deal the workflow refuses is rejected on the exchange)",
    histories=ISSUE_12_HISTORIES,
    old_path="a refused deal only recorded as deal_closed with accepted false; the exchange"
    " keeps it",
    where="workflows/lifecycle/workflow.py refuse_deal",
)
EXPIRED_LISTINGS = Patch(
    id="expired-listings",
    shipped="3084ce7 (re-listing after every listing expired, then a resource)",
    histories=ISSUE_12_HISTORIES,
    old_path="an expiry only marks the listing expired; the lifecycle waits for a deal for ever"
    " and the mandatory-listing clock stays disarmed in transaction",
    where="workflows/lifecycle/workflow.py listing_expired",
)
EVALUATION_BY_INSTITUTION = Patch(
    id="evaluation-by-institution",
    shipped="69bee33 (evaluation by an evaluation institution, issue 13 item 4)",
    histories=ISSUES_13_15_HISTORIES,
    old_path="every evaluation by the expert panel; an evaluation_report signal ignored",
    where="workflows/lifecycle/evaluation_institution.py by_institution, evaluation_report",
)
NEEDS_ATTENTION_MARKED = Patch(
    id="needs-attention-marked",
    shipped="5ded56d (details that are always true, issue 15 item 1)",
    histories=ISSUES_13_15_HISTORIES,
    old_path="no NeedsAttentionSince/AttentionReason upserts; waits record no attention in the "
    "state (rules.search_attributes(..., attention=False))",
    where="workflows/lifecycle/engine.py show_waiting, enter; workflow.py poc_progress",
)
BROKERAGE_FEE_DEDUCTED = Patch(
    id="brokerage-fee-deducted",
    shipped="946fea1 (technology managers and transfer institutions on deals, issue 13)",
    histories=ISSUES_13_15_HISTORIES,
    old_path="a deal's service fee ignored: every payment split whole (no fee_due passed to "
    "Distribution.of)",
    where="workflows/lifecycle/workflow.py exchange_payment",
)
TEAM_EQUITY_REWARD = Patch(
    id="team-equity-reward",
    shipped="946fea1 (the team's equity reward, issue 13)",
    histories=ISSUES_13_15_HISTORIES,
    old_path="technology equity registered with the team's owned part only (equity_shares), "
    "no reward out of the institution's part",
    where="workflows/lifecycle/stages.py _incubation",
)
FUND_ACCRUALS = Patch(
    id="fund-accruals",
    shipped="2109ad3 (the transfer fund's ledger, issue 13 item 3)",
    histories=ISSUES_13_15_HISTORIES,
    old_path="a payment's fund share only computed in its distribution; nothing sent to the "
    "institution's TransferFund workflow",
    where="workflows/lifecycle/transaction.py _accrue_to_fund",
)
# One marker for a new run instead of one per gate: each `workflow.patched` that answers True
# records a marker and upserts TemporalChangeVersion (a history event and a visibility write
# on the server each), 11 of both on the common path. Covers exactly the gates above it;
# a gate added later calls `workflow.patched` alone (a run recorded with this marker but
# before the later gate must still take that gate's old path). Its histories were recorded
# with projection-as-activity, whose own are those of issues 13 and 15.
NEW_RUNS_TAKE_EVERY_GATE = Patch(
    id="new-runs-take-every-gate",
    shipped="78de09e (one marker for every earlier gate in a new run)",
    histories="tests/histories/before-new-runs-take-every-gate",
    old_path="every_gate() and its calls in each gate: each gate's own workflow.patched",
    where="workflows/patches.py every gate; decided first in decide_at_run_start",
)
PROJECTION_AS_ACTIVITY = Patch(
    id="projection-as-activity",
    shipped="0fb4678 (appends as regular activities again: local activities and queries)",
    histories="tests/histories/before-projection-as-activity",
    old_path="the appends as local activities (the local-projection branch; it goes with this "
    "patch's old path once no running lifecycle took it)",
    where="workflows/lifecycle/engine.py record_outbox",
)

LEDGER = (
    PER_SYSTEM_TASK_QUEUES,
    BATCHED_PROJECTION,
    NO_LISTING_AFTER_DEAL,
    LOCAL_PROJECTION,
    TEAM_SHARE_ROUNDS_UP,
    EXCHANGE_OWNS_ITS_LISTINGS,
    POC_CHILD_REPORTS_PROGRESS,
    POC_PROGRESS_RECORDED,
    EVALUATION_IN_PLAIN_WORDS,
    EXTERNAL_EVENTS_REFUSED,
    INCUBATOR_EVENTS_HELD,
    OWNERSHIP_SPLITS_INCOME,
    EQUITY_FOLLOWS_OWNERSHIP,
    REPORT_YEAR_ON_JURISDICTION_CALENDAR,
    EXCHANGE_PUBLICITY_CLOCK,
    DEALS_REFUSED_ON_EXCHANGE,
    EXPIRED_LISTINGS,
    EVALUATION_BY_INSTITUTION,
    NEEDS_ATTENTION_MARKED,
    BROKERAGE_FEE_DEDUCTED,
    TEAM_EQUITY_REWARD,
    FUND_ACCRUALS,
    NEW_RUNS_TAKE_EVERY_GATE,
    PROJECTION_AS_ACTIVITY,
)


def every_gate() -> bool:
    """A run that started with this code: every gate above answers True with no marker of its
    own. Decided at the first call of any gate; the lifecycle decides it at its run's start."""
    return workflow.patched(NEW_RUNS_TAKE_EVERY_GATE.id)


def per_system_task_queues() -> bool:
    return every_gate() or workflow.patched(PER_SYSTEM_TASK_QUEUES.id)


def batched_projection() -> bool:
    return every_gate() or workflow.patched(BATCHED_PROJECTION.id)


def no_listing_after_deal() -> bool:
    return every_gate() or workflow.patched(NO_LISTING_AFTER_DEAL.id)


def local_projection() -> bool:
    return every_gate() or workflow.patched(LOCAL_PROJECTION.id)


def projection_as_activity() -> bool:
    return workflow.patched(PROJECTION_AS_ACTIVITY.id)


def team_share_rounds_up() -> bool:
    return every_gate() or workflow.patched(TEAM_SHARE_ROUNDS_UP.id)


def exchange_owns_its_listings() -> bool:
    return every_gate() or workflow.patched(EXCHANGE_OWNS_ITS_LISTINGS.id)


def poc_child_reports_progress() -> bool:
    return every_gate() or workflow.patched(POC_CHILD_REPORTS_PROGRESS.id)


def poc_progress_recorded() -> bool:
    return every_gate() or workflow.patched(POC_PROGRESS_RECORDED.id)


def evaluation_in_plain_words() -> bool:
    return every_gate() or workflow.patched(EVALUATION_IN_PLAIN_WORDS.id)


def external_events_refused() -> bool:
    return every_gate() or workflow.patched(EXTERNAL_EVENTS_REFUSED.id)


def incubator_events_held() -> bool:
    return every_gate() or workflow.patched(INCUBATOR_EVENTS_HELD.id)


def ownership_splits_income() -> bool:
    return every_gate() or workflow.patched(OWNERSHIP_SPLITS_INCOME.id)


def equity_follows_ownership() -> bool:
    return every_gate() or workflow.patched(EQUITY_FOLLOWS_OWNERSHIP.id)


def report_year_on_jurisdiction_calendar() -> bool:
    return every_gate() or workflow.patched(REPORT_YEAR_ON_JURISDICTION_CALENDAR.id)


def exchange_publicity_clock() -> bool:
    return every_gate() or workflow.patched(EXCHANGE_PUBLICITY_CLOCK.id)


def deals_refused_on_exchange() -> bool:
    return every_gate() or workflow.patched(DEALS_REFUSED_ON_EXCHANGE.id)


def expired_listings() -> bool:
    return every_gate() or workflow.patched(EXPIRED_LISTINGS.id)


def evaluation_by_institution() -> bool:
    return every_gate() or workflow.patched(EVALUATION_BY_INSTITUTION.id)


def needs_attention_marked() -> bool:
    return every_gate() or workflow.patched(NEEDS_ATTENTION_MARKED.id)


def brokerage_fee_deducted() -> bool:
    return every_gate() or workflow.patched(BROKERAGE_FEE_DEDUCTED.id)


def team_equity_reward() -> bool:
    return every_gate() or workflow.patched(TEAM_EQUITY_REWARD.id)


def fund_accruals() -> bool:
    return every_gate() or workflow.patched(FUND_ACCRUALS.id)


# Gates that the lifecycle's run loop reaches (not only its signal and update handlers) are
# decided when a run starts. On replay a local activity's result resumes the loop at once, in
# an earlier workflow task than it may have live (after a timed-out task, say); a gate first
# called there would not know its marker yet (recorded in a later task) and fail the replay
# with a nondeterminism error. Handlers run in the task of their own event, live and on replay.
# The gates `every_gate` answers for: those in the ledger before it.
COVERED_BY_EVERY_GATE = frozenset(LEDGER[: LEDGER.index(NEW_RUNS_TAKE_EVERY_GATE)])

RUN_START_GATES = (
    POC_PROGRESS_RECORDED,
    EVALUATION_IN_PLAIN_WORDS,
    EQUITY_FOLLOWS_OWNERSHIP,
    EXCHANGE_PUBLICITY_CLOCK,
    EVALUATION_BY_INSTITUTION,
    NEEDS_ATTENTION_MARKED,
    TEAM_EQUITY_REWARD,
    FUND_ACCRUALS,
    PROJECTION_AS_ACTIVITY,
)


def decide_at_run_start() -> None:
    """Call at the top of the lifecycle's run: later calls of these gates return the same.

    `every_gate` first, so a new run records its one marker in its first workflow task; a run
    recorded before it (no marker there on replay) decides each gate as it always did. Gates
    added after it are decided with their own marker either way."""
    covered = every_gate()
    for patch in RUN_START_GATES:
        if not (covered and patch in COVERED_BY_EVERY_GATE):
            workflow.patched(patch.id)
