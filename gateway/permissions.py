"""Who may do what: the one table of roles, operations and scopes, and the checks on it.

docs/architecture.md shows `markdown_table()` verbatim, and the authorization matrix test reads
its expectations from that document, so the docs, this table and the gateway cannot drift.

Order of checks: a role that may never do an operation gets 403 naming the roles that may; a
caller whose role may, but not on this achievement, gets 404, the same answer as for an id
that does not exist, so ids of other institutions do not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException

from gateway.tokens import Principal
from schemas.identity import Actor, Role


class Scope(StrEnum):
    OWN = "own institution"
    PANEL = "assigned panel"
    POC = "in proof of concept"
    ANY = "any institution"


class Operation(StrEnum):
    """Every protected operation of the gateway, named as in its OpenAPI document."""

    DISCLOSE = "POST /achievements"
    LIST = "GET /achievements"
    READ = "GET /achievements/{achievement_id}"
    REVIEW = "POST /achievements/{achievement_id}/reviews"
    DECIDE = "POST /achievements/{achievement_id}/decision"
    ACTIVATE = "POST /achievements/{achievement_id}/activate"
    WITHDRAW = "POST /achievements/{achievement_id}/withdraw"
    EXEMPT = "POST /achievements/{achievement_id}/exemption"
    GO_NO_GO = "POST /achievements/{achievement_id}/poc/decision"
    EVENTS = "GET /events"
    REPORT = "GET /reports/annual/{year}"
    OVERVIEW = "GET /overview"
    FUND_READ = "GET /funds/{institution}"
    FUND_USE = "POST /funds/{institution}/uses"


R = Role
PERMISSIONS: dict[Operation, dict[Role, Scope]] = {
    Operation.DISCLOSE: {R.TTO_OFFICER: Scope.OWN},
    Operation.LIST: {
        R.TTO_OFFICER: Scope.OWN,
        R.APPROVER: Scope.OWN,
        R.EXPERT: Scope.PANEL,
        R.REGULATOR: Scope.ANY,
    },
    Operation.READ: {
        R.TTO_OFFICER: Scope.OWN,
        R.APPROVER: Scope.OWN,
        R.EXPERT: Scope.PANEL,
        R.POC_FUND_OFFICER: Scope.POC,
        R.REGULATOR: Scope.ANY,
    },
    Operation.REVIEW: {R.EXPERT: Scope.PANEL},
    Operation.DECIDE: {R.TTO_OFFICER: Scope.OWN},
    Operation.ACTIVATE: {R.TTO_OFFICER: Scope.OWN},
    Operation.WITHDRAW: {R.TTO_OFFICER: Scope.OWN},
    # A statutory decision (plan item 8): not the officer's alone.
    Operation.EXEMPT: {R.APPROVER: Scope.OWN},
    Operation.GO_NO_GO: {R.POC_FUND_OFFICER: Scope.POC},
    Operation.EVENTS: {R.TTO_OFFICER: Scope.OWN, R.APPROVER: Scope.OWN, R.REGULATOR: Scope.ANY},
    Operation.REPORT: {R.TTO_OFFICER: Scope.OWN, R.APPROVER: Scope.OWN, R.REGULATOR: Scope.ANY},
    # Operators' view of their institution's lifecycles. Experts and the fund act on single
    # achievements they are given, so an institution-wide overview is not theirs.
    Operation.OVERVIEW: {
        R.TTO_OFFICER: Scope.OWN,
        R.APPROVER: Scope.OWN,
        R.REGULATOR: Scope.ANY,
    },
    Operation.FUND_READ: {
        R.TTO_OFFICER: Scope.OWN,
        R.APPROVER: Scope.OWN,
        R.REGULATOR: Scope.ANY,
    },
    # Asked by an officer, approved by an approver of the same institution whose own token
    # comes with the request (gateway/routes/funds.py): not the officer's alone.
    Operation.FUND_USE: {R.TTO_OFFICER: Scope.OWN},
}

# The confidential summary is shown to its institution, its panel and the regulator only.
SEES_SUMMARY = frozenset({Scope.OWN, Scope.PANEL, Scope.ANY})


@dataclass(frozen=True)
class Grant:
    """The role a caller acts in for one operation, how far that role reaches, and the caller's
    other roles for the same operation (a person may be an officer and an expert elsewhere)."""

    principal: Principal
    role: Role
    scope: Scope
    others: tuple[tuple[Role, Scope], ...] = ()

    @property
    def actor(self) -> Actor:
        p = self.principal
        return Actor(
            subject=p.subject,
            role=self.role,
            institution=p.institution,
            name=p.name,
            client_id=p.client_id,
        )

    @property
    def institution(self) -> str | None:
        """The institution a scoped read is limited to; None for the regulator's reach."""
        return None if self.scope is Scope.ANY else self.principal.institution

    def on(
        self, institution: str, panel: list[str] | None = None, in_poc: bool = False
    ) -> Grant | None:
        """The first of the caller's roles that reaches this achievement (widest first), as
        the grant to act and be recorded in; None: the achievement does not exist for them."""
        for role, scope in ((self.role, self.scope), *self.others):
            if _reaches(self.principal, scope, institution, panel or [], in_poc):
                return Grant(self.principal, role, scope)
        return None

    def reaches(
        self, institution: str, panel: list[str] | None = None, in_poc: bool = False
    ) -> bool:
        return self.on(institution, panel, in_poc) is not None


def _reaches(
    principal: Principal, scope: Scope, institution: str, panel: list[str], in_poc: bool
) -> bool:
    if scope is Scope.ANY:
        return True
    if scope is Scope.OWN:
        return principal.institution == institution
    if scope is Scope.PANEL:
        return principal.subject in panel
    return in_poc


def grant(principal: Principal, operation: Operation) -> Grant:
    """The widest role the caller holds for the operation; 403 naming the roles if none."""
    allowed = PERMISSIONS[operation]
    held = [(role, scope) for role, scope in allowed.items() if principal.holds(role)]
    if not held:
        roles = " or ".join(r.value for r in allowed)
        raise HTTPException(403, f"{operation.value} requires the role {roles}")
    widest = [Scope.ANY, Scope.OWN, Scope.POC, Scope.PANEL]
    held.sort(key=lambda rs: widest.index(rs[1]))
    if not principal.institution:
        held = [(r, sc) for r, sc in held if sc is not Scope.OWN] or held
    (role, scope), *others = held
    if scope is Scope.OWN and not principal.institution:
        raise HTTPException(403, f"the {role.value} role needs an institution claim in the token")
    return Grant(principal, role, scope, tuple(others))


def markdown_table() -> str:
    """The table docs/architecture.md shows: operation by role: the scope, or — for 403."""
    roles = list(Role)
    lines = [
        "| operation | " + " | ".join(r.value for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for op in Operation:
        cells = [PERMISSIONS[op].get(r) for r in roles]
        lines.append(f"| `{op.value}` | " + " | ".join(c.value if c else "—" for c in cells) + " |")
    return "\n".join(lines)
